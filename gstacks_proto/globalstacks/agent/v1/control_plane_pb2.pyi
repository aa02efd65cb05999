from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ErrorCode(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    ERROR_CODE_UNSPECIFIED: _ClassVar[ErrorCode]
    ERROR_CODE_INVALID_ARGUMENT: _ClassVar[ErrorCode]
    ERROR_CODE_NOT_FOUND: _ClassVar[ErrorCode]
    ERROR_CODE_ALREADY_EXISTS: _ClassVar[ErrorCode]
    ERROR_CODE_FAILED_PRECONDITION: _ClassVar[ErrorCode]
    ERROR_CODE_UNAVAILABLE: _ClassVar[ErrorCode]
    ERROR_CODE_UNAUTHENTICATED: _ClassVar[ErrorCode]
    ERROR_CODE_PERMISSION_DENIED: _ClassVar[ErrorCode]
    ERROR_CODE_INTERNAL: _ClassVar[ErrorCode]
    ERROR_CODE_UNIMPLEMENTED: _ClassVar[ErrorCode]
    ERROR_CODE_DEADLINE_EXCEEDED: _ClassVar[ErrorCode]

class SandboxState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    SANDBOX_STATE_UNSPECIFIED: _ClassVar[SandboxState]
    SANDBOX_STATE_CREATING: _ClassVar[SandboxState]
    SANDBOX_STATE_RUNNING: _ClassVar[SandboxState]
    SANDBOX_STATE_STOPPED: _ClassVar[SandboxState]
    SANDBOX_STATE_FAILED: _ClassVar[SandboxState]

class FilesystemState(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    FILESYSTEM_STATE_UNSPECIFIED: _ClassVar[FilesystemState]
    FILESYSTEM_STATE_MOUNTED: _ClassVar[FilesystemState]
    FILESYSTEM_STATE_DEGRADED: _ClassVar[FilesystemState]
    FILESYSTEM_STATE_UNMOUNTED: _ClassVar[FilesystemState]
ERROR_CODE_UNSPECIFIED: ErrorCode
ERROR_CODE_INVALID_ARGUMENT: ErrorCode
ERROR_CODE_NOT_FOUND: ErrorCode
ERROR_CODE_ALREADY_EXISTS: ErrorCode
ERROR_CODE_FAILED_PRECONDITION: ErrorCode
ERROR_CODE_UNAVAILABLE: ErrorCode
ERROR_CODE_UNAUTHENTICATED: ErrorCode
ERROR_CODE_PERMISSION_DENIED: ErrorCode
ERROR_CODE_INTERNAL: ErrorCode
ERROR_CODE_UNIMPLEMENTED: ErrorCode
ERROR_CODE_DEADLINE_EXCEEDED: ErrorCode
SANDBOX_STATE_UNSPECIFIED: SandboxState
SANDBOX_STATE_CREATING: SandboxState
SANDBOX_STATE_RUNNING: SandboxState
SANDBOX_STATE_STOPPED: SandboxState
SANDBOX_STATE_FAILED: SandboxState
FILESYSTEM_STATE_UNSPECIFIED: FilesystemState
FILESYSTEM_STATE_MOUNTED: FilesystemState
FILESYSTEM_STATE_DEGRADED: FilesystemState
FILESYSTEM_STATE_UNMOUNTED: FilesystemState

class Envelope(_message.Message):
    __slots__ = ("request_id", "reply_to", "stream_id", "error", "agent_hello", "heartbeat", "registry_credential_request", "sandbox_status_changed", "image_pull_progress", "agent_welcome", "registry_credential", "sandbox_create", "sandbox_get", "sandbox_delete", "sandbox_list", "sandbox_info", "sandbox_deleted", "sandbox_inventory", "image_pull", "image_pulled", "terminal_open", "terminal_opened", "terminal_data", "terminal_resize", "terminal_close", "terminal_exit", "stream_window", "terminal_attach", "terminal_attached", "terminal_detach", "volume_ensure", "volume_attach", "volume_detach", "volume_delete", "volume_usage_request", "volume_info", "volume_attached", "host_logs_request", "host_logs", "log_line", "stream_close", "ack", "network_state", "network_state_applied", "network_diagnose", "network_diagnosis")
    REQUEST_ID_FIELD_NUMBER: _ClassVar[int]
    REPLY_TO_FIELD_NUMBER: _ClassVar[int]
    STREAM_ID_FIELD_NUMBER: _ClassVar[int]
    ERROR_FIELD_NUMBER: _ClassVar[int]
    AGENT_HELLO_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_CREDENTIAL_REQUEST_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_STATUS_CHANGED_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PULL_PROGRESS_FIELD_NUMBER: _ClassVar[int]
    AGENT_WELCOME_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_CREDENTIAL_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_CREATE_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_GET_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_DELETE_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_LIST_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_INFO_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_DELETED_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_INVENTORY_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PULL_FIELD_NUMBER: _ClassVar[int]
    IMAGE_PULLED_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_OPEN_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_OPENED_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_DATA_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_RESIZE_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_CLOSE_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_EXIT_FIELD_NUMBER: _ClassVar[int]
    STREAM_WINDOW_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_ATTACH_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_ATTACHED_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_DETACH_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ENSURE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ATTACH_FIELD_NUMBER: _ClassVar[int]
    VOLUME_DETACH_FIELD_NUMBER: _ClassVar[int]
    VOLUME_DELETE_FIELD_NUMBER: _ClassVar[int]
    VOLUME_USAGE_REQUEST_FIELD_NUMBER: _ClassVar[int]
    VOLUME_INFO_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ATTACHED_FIELD_NUMBER: _ClassVar[int]
    HOST_LOGS_REQUEST_FIELD_NUMBER: _ClassVar[int]
    HOST_LOGS_FIELD_NUMBER: _ClassVar[int]
    LOG_LINE_FIELD_NUMBER: _ClassVar[int]
    STREAM_CLOSE_FIELD_NUMBER: _ClassVar[int]
    ACK_FIELD_NUMBER: _ClassVar[int]
    NETWORK_STATE_FIELD_NUMBER: _ClassVar[int]
    NETWORK_STATE_APPLIED_FIELD_NUMBER: _ClassVar[int]
    NETWORK_DIAGNOSE_FIELD_NUMBER: _ClassVar[int]
    NETWORK_DIAGNOSIS_FIELD_NUMBER: _ClassVar[int]
    request_id: int
    reply_to: int
    stream_id: int
    error: Error
    agent_hello: AgentHello
    heartbeat: Heartbeat
    registry_credential_request: RegistryCredentialRequest
    sandbox_status_changed: SandboxStatusChanged
    image_pull_progress: ImagePullProgress
    agent_welcome: AgentWelcome
    registry_credential: RegistryCredential
    sandbox_create: SandboxCreate
    sandbox_get: SandboxGet
    sandbox_delete: SandboxDelete
    sandbox_list: SandboxList
    sandbox_info: SandboxInfo
    sandbox_deleted: SandboxDeleted
    sandbox_inventory: SandboxInventory
    image_pull: ImagePull
    image_pulled: ImagePulled
    terminal_open: TerminalOpen
    terminal_opened: TerminalOpened
    terminal_data: TerminalData
    terminal_resize: TerminalResize
    terminal_close: TerminalClose
    terminal_exit: TerminalExit
    stream_window: StreamWindow
    terminal_attach: TerminalAttach
    terminal_attached: TerminalAttached
    terminal_detach: TerminalDetach
    volume_ensure: VolumeEnsure
    volume_attach: VolumeAttach
    volume_detach: VolumeDetach
    volume_delete: VolumeDelete
    volume_usage_request: VolumeUsageRequest
    volume_info: VolumeInfo
    volume_attached: VolumeAttached
    host_logs_request: HostLogsRequest
    host_logs: HostLogs
    log_line: LogLine
    stream_close: StreamClose
    ack: Ack
    network_state: NetworkState
    network_state_applied: NetworkStateApplied
    network_diagnose: NetworkDiagnose
    network_diagnosis: NetworkDiagnosis
    def __init__(self, request_id: _Optional[int] = ..., reply_to: _Optional[int] = ..., stream_id: _Optional[int] = ..., error: _Optional[_Union[Error, _Mapping]] = ..., agent_hello: _Optional[_Union[AgentHello, _Mapping]] = ..., heartbeat: _Optional[_Union[Heartbeat, _Mapping]] = ..., registry_credential_request: _Optional[_Union[RegistryCredentialRequest, _Mapping]] = ..., sandbox_status_changed: _Optional[_Union[SandboxStatusChanged, _Mapping]] = ..., image_pull_progress: _Optional[_Union[ImagePullProgress, _Mapping]] = ..., agent_welcome: _Optional[_Union[AgentWelcome, _Mapping]] = ..., registry_credential: _Optional[_Union[RegistryCredential, _Mapping]] = ..., sandbox_create: _Optional[_Union[SandboxCreate, _Mapping]] = ..., sandbox_get: _Optional[_Union[SandboxGet, _Mapping]] = ..., sandbox_delete: _Optional[_Union[SandboxDelete, _Mapping]] = ..., sandbox_list: _Optional[_Union[SandboxList, _Mapping]] = ..., sandbox_info: _Optional[_Union[SandboxInfo, _Mapping]] = ..., sandbox_deleted: _Optional[_Union[SandboxDeleted, _Mapping]] = ..., sandbox_inventory: _Optional[_Union[SandboxInventory, _Mapping]] = ..., image_pull: _Optional[_Union[ImagePull, _Mapping]] = ..., image_pulled: _Optional[_Union[ImagePulled, _Mapping]] = ..., terminal_open: _Optional[_Union[TerminalOpen, _Mapping]] = ..., terminal_opened: _Optional[_Union[TerminalOpened, _Mapping]] = ..., terminal_data: _Optional[_Union[TerminalData, _Mapping]] = ..., terminal_resize: _Optional[_Union[TerminalResize, _Mapping]] = ..., terminal_close: _Optional[_Union[TerminalClose, _Mapping]] = ..., terminal_exit: _Optional[_Union[TerminalExit, _Mapping]] = ..., stream_window: _Optional[_Union[StreamWindow, _Mapping]] = ..., terminal_attach: _Optional[_Union[TerminalAttach, _Mapping]] = ..., terminal_attached: _Optional[_Union[TerminalAttached, _Mapping]] = ..., terminal_detach: _Optional[_Union[TerminalDetach, _Mapping]] = ..., volume_ensure: _Optional[_Union[VolumeEnsure, _Mapping]] = ..., volume_attach: _Optional[_Union[VolumeAttach, _Mapping]] = ..., volume_detach: _Optional[_Union[VolumeDetach, _Mapping]] = ..., volume_delete: _Optional[_Union[VolumeDelete, _Mapping]] = ..., volume_usage_request: _Optional[_Union[VolumeUsageRequest, _Mapping]] = ..., volume_info: _Optional[_Union[VolumeInfo, _Mapping]] = ..., volume_attached: _Optional[_Union[VolumeAttached, _Mapping]] = ..., host_logs_request: _Optional[_Union[HostLogsRequest, _Mapping]] = ..., host_logs: _Optional[_Union[HostLogs, _Mapping]] = ..., log_line: _Optional[_Union[LogLine, _Mapping]] = ..., stream_close: _Optional[_Union[StreamClose, _Mapping]] = ..., ack: _Optional[_Union[Ack, _Mapping]] = ..., network_state: _Optional[_Union[NetworkState, _Mapping]] = ..., network_state_applied: _Optional[_Union[NetworkStateApplied, _Mapping]] = ..., network_diagnose: _Optional[_Union[NetworkDiagnose, _Mapping]] = ..., network_diagnosis: _Optional[_Union[NetworkDiagnosis, _Mapping]] = ...) -> None: ...

class Error(_message.Message):
    __slots__ = ("code", "message", "resource_id")
    CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_ID_FIELD_NUMBER: _ClassVar[int]
    code: ErrorCode
    message: str
    resource_id: str
    def __init__(self, code: _Optional[_Union[ErrorCode, str]] = ..., message: _Optional[str] = ..., resource_id: _Optional[str] = ...) -> None: ...

class Ack(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class AgentHello(_message.Message):
    __slots__ = ("host_id", "agent_version", "hostname", "overview", "sandboxes", "cached_images", "capabilities", "addresses", "endpoint", "terminal_session_ids", "mesh_public_key")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    OVERVIEW_FIELD_NUMBER: _ClassVar[int]
    SANDBOXES_FIELD_NUMBER: _ClassVar[int]
    CACHED_IMAGES_FIELD_NUMBER: _ClassVar[int]
    CAPABILITIES_FIELD_NUMBER: _ClassVar[int]
    ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    TERMINAL_SESSION_IDS_FIELD_NUMBER: _ClassVar[int]
    MESH_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    agent_version: str
    hostname: str
    overview: HostOverview
    sandboxes: _containers.RepeatedCompositeFieldContainer[SandboxInfo]
    cached_images: _containers.RepeatedCompositeFieldContainer[CachedImage]
    capabilities: _containers.RepeatedScalarFieldContainer[str]
    addresses: _containers.RepeatedScalarFieldContainer[str]
    endpoint: str
    terminal_session_ids: _containers.RepeatedScalarFieldContainer[str]
    mesh_public_key: str
    def __init__(self, host_id: _Optional[str] = ..., agent_version: _Optional[str] = ..., hostname: _Optional[str] = ..., overview: _Optional[_Union[HostOverview, _Mapping]] = ..., sandboxes: _Optional[_Iterable[_Union[SandboxInfo, _Mapping]]] = ..., cached_images: _Optional[_Iterable[_Union[CachedImage, _Mapping]]] = ..., capabilities: _Optional[_Iterable[str]] = ..., addresses: _Optional[_Iterable[str]] = ..., endpoint: _Optional[str] = ..., terminal_session_ids: _Optional[_Iterable[str]] = ..., mesh_public_key: _Optional[str] = ...) -> None: ...

class AgentWelcome(_message.Message):
    __slots__ = ("host_id", "heartbeat_interval_s", "registry_url")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    HEARTBEAT_INTERVAL_S_FIELD_NUMBER: _ClassVar[int]
    REGISTRY_URL_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    heartbeat_interval_s: int
    registry_url: str
    def __init__(self, host_id: _Optional[str] = ..., heartbeat_interval_s: _Optional[int] = ..., registry_url: _Optional[str] = ...) -> None: ...

class HostOverview(_message.Message):
    __slots__ = ("cpu_percent", "cpu_count", "memory_total_bytes", "memory_used_bytes", "disk_total_bytes", "disk_used_bytes", "load_1m", "load_5m", "load_15m", "uptime_s", "kernel", "agent_version", "sandbox_count")
    CPU_PERCENT_FIELD_NUMBER: _ClassVar[int]
    CPU_COUNT_FIELD_NUMBER: _ClassVar[int]
    MEMORY_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    MEMORY_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_TOTAL_BYTES_FIELD_NUMBER: _ClassVar[int]
    DISK_USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    LOAD_1M_FIELD_NUMBER: _ClassVar[int]
    LOAD_5M_FIELD_NUMBER: _ClassVar[int]
    LOAD_15M_FIELD_NUMBER: _ClassVar[int]
    UPTIME_S_FIELD_NUMBER: _ClassVar[int]
    KERNEL_FIELD_NUMBER: _ClassVar[int]
    AGENT_VERSION_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_COUNT_FIELD_NUMBER: _ClassVar[int]
    cpu_percent: float
    cpu_count: int
    memory_total_bytes: int
    memory_used_bytes: int
    disk_total_bytes: int
    disk_used_bytes: int
    load_1m: float
    load_5m: float
    load_15m: float
    uptime_s: int
    kernel: str
    agent_version: str
    sandbox_count: int
    def __init__(self, cpu_percent: _Optional[float] = ..., cpu_count: _Optional[int] = ..., memory_total_bytes: _Optional[int] = ..., memory_used_bytes: _Optional[int] = ..., disk_total_bytes: _Optional[int] = ..., disk_used_bytes: _Optional[int] = ..., load_1m: _Optional[float] = ..., load_5m: _Optional[float] = ..., load_15m: _Optional[float] = ..., uptime_s: _Optional[int] = ..., kernel: _Optional[str] = ..., agent_version: _Optional[str] = ..., sandbox_count: _Optional[int] = ...) -> None: ...

class Heartbeat(_message.Message):
    __slots__ = ("overview", "cached_images", "volume_filesystem")
    OVERVIEW_FIELD_NUMBER: _ClassVar[int]
    CACHED_IMAGES_FIELD_NUMBER: _ClassVar[int]
    VOLUME_FILESYSTEM_FIELD_NUMBER: _ClassVar[int]
    overview: HostOverview
    cached_images: _containers.RepeatedCompositeFieldContainer[CachedImage]
    volume_filesystem: FilesystemStatus
    def __init__(self, overview: _Optional[_Union[HostOverview, _Mapping]] = ..., cached_images: _Optional[_Iterable[_Union[CachedImage, _Mapping]]] = ..., volume_filesystem: _Optional[_Union[FilesystemStatus, _Mapping]] = ...) -> None: ...

class CachedImage(_message.Message):
    __slots__ = ("digest", "size_bytes")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    digest: str
    size_bytes: int
    def __init__(self, digest: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class RegistryCredentialRequest(_message.Message):
    __slots__ = ("repository", "action", "artifact")
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    ARTIFACT_FIELD_NUMBER: _ClassVar[int]
    repository: str
    action: str
    artifact: str
    def __init__(self, repository: _Optional[str] = ..., action: _Optional[str] = ..., artifact: _Optional[str] = ...) -> None: ...

class RegistryCredential(_message.Message):
    __slots__ = ("registry_url", "token", "expires_at_unix")
    REGISTRY_URL_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    registry_url: str
    token: str
    expires_at_unix: int
    def __init__(self, registry_url: _Optional[str] = ..., token: _Optional[str] = ..., expires_at_unix: _Optional[int] = ...) -> None: ...

class ImageRef(_message.Message):
    __slots__ = ("registry_url", "repository", "digest")
    REGISTRY_URL_FIELD_NUMBER: _ClassVar[int]
    REPOSITORY_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    registry_url: str
    repository: str
    digest: str
    def __init__(self, registry_url: _Optional[str] = ..., repository: _Optional[str] = ..., digest: _Optional[str] = ...) -> None: ...

class ImagePull(_message.Message):
    __slots__ = ("image",)
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    image: ImageRef
    def __init__(self, image: _Optional[_Union[ImageRef, _Mapping]] = ...) -> None: ...

class ImagePulled(_message.Message):
    __slots__ = ("digest", "bytes_downloaded", "blobs_downloaded", "blobs_cached")
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    BYTES_DOWNLOADED_FIELD_NUMBER: _ClassVar[int]
    BLOBS_DOWNLOADED_FIELD_NUMBER: _ClassVar[int]
    BLOBS_CACHED_FIELD_NUMBER: _ClassVar[int]
    digest: str
    bytes_downloaded: int
    blobs_downloaded: int
    blobs_cached: int
    def __init__(self, digest: _Optional[str] = ..., bytes_downloaded: _Optional[int] = ..., blobs_downloaded: _Optional[int] = ..., blobs_cached: _Optional[int] = ...) -> None: ...

class ImagePullProgress(_message.Message):
    __slots__ = ("sandbox_id", "digest", "bytes_done", "bytes_total")
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    DIGEST_FIELD_NUMBER: _ClassVar[int]
    BYTES_DONE_FIELD_NUMBER: _ClassVar[int]
    BYTES_TOTAL_FIELD_NUMBER: _ClassVar[int]
    sandbox_id: str
    digest: str
    bytes_done: int
    bytes_total: int
    def __init__(self, sandbox_id: _Optional[str] = ..., digest: _Optional[str] = ..., bytes_done: _Optional[int] = ..., bytes_total: _Optional[int] = ...) -> None: ...

class SandboxCreate(_message.Message):
    __slots__ = ("sandbox_id", "image", "command", "env", "hostname", "volumes")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    VOLUMES_FIELD_NUMBER: _ClassVar[int]
    sandbox_id: str
    image: ImageRef
    command: _containers.RepeatedScalarFieldContainer[str]
    env: _containers.ScalarMap[str, str]
    hostname: str
    volumes: _containers.RepeatedCompositeFieldContainer[VolumeMount]
    def __init__(self, sandbox_id: _Optional[str] = ..., image: _Optional[_Union[ImageRef, _Mapping]] = ..., command: _Optional[_Iterable[str]] = ..., env: _Optional[_Mapping[str, str]] = ..., hostname: _Optional[str] = ..., volumes: _Optional[_Iterable[_Union[VolumeMount, _Mapping]]] = ...) -> None: ...

class SandboxGet(_message.Message):
    __slots__ = ("sandbox_id",)
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    sandbox_id: str
    def __init__(self, sandbox_id: _Optional[str] = ...) -> None: ...

class SandboxDelete(_message.Message):
    __slots__ = ("sandbox_id", "grace_s")
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    GRACE_S_FIELD_NUMBER: _ClassVar[int]
    sandbox_id: str
    grace_s: int
    def __init__(self, sandbox_id: _Optional[str] = ..., grace_s: _Optional[int] = ...) -> None: ...

class SandboxDeleted(_message.Message):
    __slots__ = ("sandbox_id", "existed")
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    EXISTED_FIELD_NUMBER: _ClassVar[int]
    sandbox_id: str
    existed: bool
    def __init__(self, sandbox_id: _Optional[str] = ..., existed: _Optional[bool] = ...) -> None: ...

class SandboxList(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class SandboxInventory(_message.Message):
    __slots__ = ("sandboxes",)
    SANDBOXES_FIELD_NUMBER: _ClassVar[int]
    sandboxes: _containers.RepeatedCompositeFieldContainer[SandboxInfo]
    def __init__(self, sandboxes: _Optional[_Iterable[_Union[SandboxInfo, _Mapping]]] = ...) -> None: ...

class SandboxInfo(_message.Message):
    __slots__ = ("sandbox_id", "state", "image_digest", "pid", "exit_code", "has_exit_code", "message", "hostname")
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    STATE_FIELD_NUMBER: _ClassVar[int]
    IMAGE_DIGEST_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    HAS_EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    HOSTNAME_FIELD_NUMBER: _ClassVar[int]
    sandbox_id: str
    state: SandboxState
    image_digest: str
    pid: int
    exit_code: int
    has_exit_code: bool
    message: str
    hostname: str
    def __init__(self, sandbox_id: _Optional[str] = ..., state: _Optional[_Union[SandboxState, str]] = ..., image_digest: _Optional[str] = ..., pid: _Optional[int] = ..., exit_code: _Optional[int] = ..., has_exit_code: _Optional[bool] = ..., message: _Optional[str] = ..., hostname: _Optional[str] = ...) -> None: ...

class SandboxStatusChanged(_message.Message):
    __slots__ = ("sandbox",)
    SANDBOX_FIELD_NUMBER: _ClassVar[int]
    sandbox: SandboxInfo
    def __init__(self, sandbox: _Optional[_Union[SandboxInfo, _Mapping]] = ...) -> None: ...

class TerminalOpen(_message.Message):
    __slots__ = ("session_id", "sandbox_id", "command", "cols", "rows", "env", "initial_window", "no_tty")
    class EnvEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    COMMAND_FIELD_NUMBER: _ClassVar[int]
    COLS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    ENV_FIELD_NUMBER: _ClassVar[int]
    INITIAL_WINDOW_FIELD_NUMBER: _ClassVar[int]
    NO_TTY_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    sandbox_id: str
    command: _containers.RepeatedScalarFieldContainer[str]
    cols: int
    rows: int
    env: _containers.ScalarMap[str, str]
    initial_window: int
    no_tty: bool
    def __init__(self, session_id: _Optional[str] = ..., sandbox_id: _Optional[str] = ..., command: _Optional[_Iterable[str]] = ..., cols: _Optional[int] = ..., rows: _Optional[int] = ..., env: _Optional[_Mapping[str, str]] = ..., initial_window: _Optional[int] = ..., no_tty: _Optional[bool] = ...) -> None: ...

class TerminalOpened(_message.Message):
    __slots__ = ("session_id", "pid")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    PID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    pid: int
    def __init__(self, session_id: _Optional[str] = ..., pid: _Optional[int] = ...) -> None: ...

class TerminalData(_message.Message):
    __slots__ = ("data", "eof")
    DATA_FIELD_NUMBER: _ClassVar[int]
    EOF_FIELD_NUMBER: _ClassVar[int]
    data: bytes
    eof: bool
    def __init__(self, data: _Optional[bytes] = ..., eof: _Optional[bool] = ...) -> None: ...

class TerminalResize(_message.Message):
    __slots__ = ("cols", "rows")
    COLS_FIELD_NUMBER: _ClassVar[int]
    ROWS_FIELD_NUMBER: _ClassVar[int]
    cols: int
    rows: int
    def __init__(self, cols: _Optional[int] = ..., rows: _Optional[int] = ...) -> None: ...

class TerminalClose(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class TerminalExit(_message.Message):
    __slots__ = ("session_id", "exit_code", "signal")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    EXIT_CODE_FIELD_NUMBER: _ClassVar[int]
    SIGNAL_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    exit_code: int
    signal: int
    def __init__(self, session_id: _Optional[str] = ..., exit_code: _Optional[int] = ..., signal: _Optional[int] = ...) -> None: ...

class StreamWindow(_message.Message):
    __slots__ = ("increment",)
    INCREMENT_FIELD_NUMBER: _ClassVar[int]
    increment: int
    def __init__(self, increment: _Optional[int] = ...) -> None: ...

class StreamClose(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class TerminalAttach(_message.Message):
    __slots__ = ("session_id", "offset", "initial_window")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    INITIAL_WINDOW_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    offset: int
    initial_window: int
    def __init__(self, session_id: _Optional[str] = ..., offset: _Optional[int] = ..., initial_window: _Optional[int] = ...) -> None: ...

class TerminalAttached(_message.Message):
    __slots__ = ("session_id", "offset")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    OFFSET_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    offset: int
    def __init__(self, session_id: _Optional[str] = ..., offset: _Optional[int] = ...) -> None: ...

class TerminalDetach(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class FilesystemStatus(_message.Message):
    __slots__ = ("state", "mount_point", "message", "filesystem_id", "remounts", "last_failure", "last_failure_unix_ms")
    STATE_FIELD_NUMBER: _ClassVar[int]
    MOUNT_POINT_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    FILESYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
    REMOUNTS_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_FIELD_NUMBER: _ClassVar[int]
    LAST_FAILURE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    state: FilesystemState
    mount_point: str
    message: str
    filesystem_id: str
    remounts: int
    last_failure: str
    last_failure_unix_ms: int
    def __init__(self, state: _Optional[_Union[FilesystemState, str]] = ..., mount_point: _Optional[str] = ..., message: _Optional[str] = ..., filesystem_id: _Optional[str] = ..., remounts: _Optional[int] = ..., last_failure: _Optional[str] = ..., last_failure_unix_ms: _Optional[int] = ...) -> None: ...

class VolumeEnsure(_message.Message):
    __slots__ = ("volume_id", "size_bytes")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    volume_id: str
    size_bytes: int
    def __init__(self, volume_id: _Optional[str] = ..., size_bytes: _Optional[int] = ...) -> None: ...

class VolumeMount(_message.Message):
    __slots__ = ("attachment_id", "volume_id", "mount_path", "read_only")
    ATTACHMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    MOUNT_PATH_FIELD_NUMBER: _ClassVar[int]
    READ_ONLY_FIELD_NUMBER: _ClassVar[int]
    attachment_id: str
    volume_id: str
    mount_path: str
    read_only: bool
    def __init__(self, attachment_id: _Optional[str] = ..., volume_id: _Optional[str] = ..., mount_path: _Optional[str] = ..., read_only: _Optional[bool] = ...) -> None: ...

class VolumeAttach(_message.Message):
    __slots__ = ("sandbox_id", "mount", "size_bytes", "filesystem_id")
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    MOUNT_FIELD_NUMBER: _ClassVar[int]
    SIZE_BYTES_FIELD_NUMBER: _ClassVar[int]
    FILESYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
    sandbox_id: str
    mount: VolumeMount
    size_bytes: int
    filesystem_id: str
    def __init__(self, sandbox_id: _Optional[str] = ..., mount: _Optional[_Union[VolumeMount, _Mapping]] = ..., size_bytes: _Optional[int] = ..., filesystem_id: _Optional[str] = ...) -> None: ...

class VolumeAttached(_message.Message):
    __slots__ = ("attachment_id", "host_path", "filesystem_id")
    ATTACHMENT_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_PATH_FIELD_NUMBER: _ClassVar[int]
    FILESYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
    attachment_id: str
    host_path: str
    filesystem_id: str
    def __init__(self, attachment_id: _Optional[str] = ..., host_path: _Optional[str] = ..., filesystem_id: _Optional[str] = ...) -> None: ...

class VolumeDetach(_message.Message):
    __slots__ = ("sandbox_id", "attachment_id", "volume_id")
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENT_ID_FIELD_NUMBER: _ClassVar[int]
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    sandbox_id: str
    attachment_id: str
    volume_id: str
    def __init__(self, sandbox_id: _Optional[str] = ..., attachment_id: _Optional[str] = ..., volume_id: _Optional[str] = ...) -> None: ...

class VolumeDelete(_message.Message):
    __slots__ = ("volume_id",)
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    volume_id: str
    def __init__(self, volume_id: _Optional[str] = ...) -> None: ...

class VolumeUsageRequest(_message.Message):
    __slots__ = ("volume_id",)
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    volume_id: str
    def __init__(self, volume_id: _Optional[str] = ...) -> None: ...

class VolumeInfo(_message.Message):
    __slots__ = ("volume_id", "exists", "used_bytes", "quota_bytes", "inodes", "host_path", "filesystem_id")
    VOLUME_ID_FIELD_NUMBER: _ClassVar[int]
    EXISTS_FIELD_NUMBER: _ClassVar[int]
    USED_BYTES_FIELD_NUMBER: _ClassVar[int]
    QUOTA_BYTES_FIELD_NUMBER: _ClassVar[int]
    INODES_FIELD_NUMBER: _ClassVar[int]
    HOST_PATH_FIELD_NUMBER: _ClassVar[int]
    FILESYSTEM_ID_FIELD_NUMBER: _ClassVar[int]
    volume_id: str
    exists: bool
    used_bytes: int
    quota_bytes: int
    inodes: int
    host_path: str
    filesystem_id: str
    def __init__(self, volume_id: _Optional[str] = ..., exists: _Optional[bool] = ..., used_bytes: _Optional[int] = ..., quota_bytes: _Optional[int] = ..., inodes: _Optional[int] = ..., host_path: _Optional[str] = ..., filesystem_id: _Optional[str] = ...) -> None: ...

class HostLogsRequest(_message.Message):
    __slots__ = ("since_unix_ms", "limit", "follow")
    SINCE_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LIMIT_FIELD_NUMBER: _ClassVar[int]
    FOLLOW_FIELD_NUMBER: _ClassVar[int]
    since_unix_ms: int
    limit: int
    follow: bool
    def __init__(self, since_unix_ms: _Optional[int] = ..., limit: _Optional[int] = ..., follow: _Optional[bool] = ...) -> None: ...

class HostLogs(_message.Message):
    __slots__ = ("lines",)
    LINES_FIELD_NUMBER: _ClassVar[int]
    lines: _containers.RepeatedCompositeFieldContainer[LogLine]
    def __init__(self, lines: _Optional[_Iterable[_Union[LogLine, _Mapping]]] = ...) -> None: ...

class LogLine(_message.Message):
    __slots__ = ("time_unix_ms", "level", "logger", "message")
    TIME_UNIX_MS_FIELD_NUMBER: _ClassVar[int]
    LEVEL_FIELD_NUMBER: _ClassVar[int]
    LOGGER_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    time_unix_ms: int
    level: str
    logger: str
    message: str
    def __init__(self, time_unix_ms: _Optional[int] = ..., level: _Optional[str] = ..., logger: _Optional[str] = ..., message: _Optional[str] = ...) -> None: ...

class MeshPeer(_message.Message):
    __slots__ = ("public_key", "endpoint", "allowed_ips", "host_id", "join_id", "expires_at_unix", "persistent_keepalive_s", "mesh_address")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    ALLOWED_IPS_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    JOIN_ID_FIELD_NUMBER: _ClassVar[int]
    EXPIRES_AT_UNIX_FIELD_NUMBER: _ClassVar[int]
    PERSISTENT_KEEPALIVE_S_FIELD_NUMBER: _ClassVar[int]
    MESH_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    endpoint: str
    allowed_ips: _containers.RepeatedScalarFieldContainer[str]
    host_id: str
    join_id: str
    expires_at_unix: int
    persistent_keepalive_s: int
    mesh_address: str
    def __init__(self, public_key: _Optional[str] = ..., endpoint: _Optional[str] = ..., allowed_ips: _Optional[_Iterable[str]] = ..., host_id: _Optional[str] = ..., join_id: _Optional[str] = ..., expires_at_unix: _Optional[int] = ..., persistent_keepalive_s: _Optional[int] = ..., mesh_address: _Optional[str] = ...) -> None: ...

class NetworkMember(_message.Message):
    __slots__ = ("member_id", "sandbox_id", "host_id", "address", "aliases", "ports")
    MEMBER_ID_FIELD_NUMBER: _ClassVar[int]
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    member_id: str
    sandbox_id: str
    host_id: str
    address: str
    aliases: _containers.RepeatedScalarFieldContainer[str]
    ports: _containers.RepeatedScalarFieldContainer[int]
    def __init__(self, member_id: _Optional[str] = ..., sandbox_id: _Optional[str] = ..., host_id: _Optional[str] = ..., address: _Optional[str] = ..., aliases: _Optional[_Iterable[str]] = ..., ports: _Optional[_Iterable[int]] = ...) -> None: ...

class NetworkPolicyRule(_message.Message):
    __slots__ = ("rule_id", "action", "from_addresses", "to_addresses", "ports", "protocol", "from_selector", "to_selector")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    ACTION_FIELD_NUMBER: _ClassVar[int]
    FROM_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    TO_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    PORTS_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    FROM_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    TO_SELECTOR_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    action: str
    from_addresses: _containers.RepeatedScalarFieldContainer[str]
    to_addresses: _containers.RepeatedScalarFieldContainer[str]
    ports: _containers.RepeatedScalarFieldContainer[int]
    protocol: str
    from_selector: str
    to_selector: str
    def __init__(self, rule_id: _Optional[str] = ..., action: _Optional[str] = ..., from_addresses: _Optional[_Iterable[str]] = ..., to_addresses: _Optional[_Iterable[str]] = ..., ports: _Optional[_Iterable[int]] = ..., protocol: _Optional[str] = ..., from_selector: _Optional[str] = ..., to_selector: _Optional[str] = ...) -> None: ...

class NetworkSpec(_message.Message):
    __slots__ = ("network_id", "name", "cidr", "gateway", "members", "policies", "trusted_addresses")
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    NAME_FIELD_NUMBER: _ClassVar[int]
    CIDR_FIELD_NUMBER: _ClassVar[int]
    GATEWAY_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    TRUSTED_ADDRESSES_FIELD_NUMBER: _ClassVar[int]
    network_id: str
    name: str
    cidr: str
    gateway: str
    members: _containers.RepeatedCompositeFieldContainer[NetworkMember]
    policies: _containers.RepeatedCompositeFieldContainer[NetworkPolicyRule]
    trusted_addresses: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, network_id: _Optional[str] = ..., name: _Optional[str] = ..., cidr: _Optional[str] = ..., gateway: _Optional[str] = ..., members: _Optional[_Iterable[_Union[NetworkMember, _Mapping]]] = ..., policies: _Optional[_Iterable[_Union[NetworkPolicyRule, _Mapping]]] = ..., trusted_addresses: _Optional[_Iterable[str]] = ...) -> None: ...

class NetworkState(_message.Message):
    __slots__ = ("mesh_address", "peers", "networks", "generation", "listen_port")
    MESH_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    NETWORKS_FIELD_NUMBER: _ClassVar[int]
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    LISTEN_PORT_FIELD_NUMBER: _ClassVar[int]
    mesh_address: str
    peers: _containers.RepeatedCompositeFieldContainer[MeshPeer]
    networks: _containers.RepeatedCompositeFieldContainer[NetworkSpec]
    generation: int
    listen_port: int
    def __init__(self, mesh_address: _Optional[str] = ..., peers: _Optional[_Iterable[_Union[MeshPeer, _Mapping]]] = ..., networks: _Optional[_Iterable[_Union[NetworkSpec, _Mapping]]] = ..., generation: _Optional[int] = ..., listen_port: _Optional[int] = ...) -> None: ...

class NetworkStateApplied(_message.Message):
    __slots__ = ("generation", "attachments", "failures")
    GENERATION_FIELD_NUMBER: _ClassVar[int]
    ATTACHMENTS_FIELD_NUMBER: _ClassVar[int]
    FAILURES_FIELD_NUMBER: _ClassVar[int]
    generation: int
    attachments: _containers.RepeatedScalarFieldContainer[str]
    failures: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, generation: _Optional[int] = ..., attachments: _Optional[_Iterable[str]] = ..., failures: _Optional[_Iterable[str]] = ...) -> None: ...

class NetworkDiagnose(_message.Message):
    __slots__ = ("network_id",)
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    network_id: str
    def __init__(self, network_id: _Optional[str] = ...) -> None: ...

class PeerCheck(_message.Message):
    __slots__ = ("public_key", "host_id", "join_id", "endpoint", "last_handshake_unix", "reachable", "rtt_ms", "detail")
    PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    JOIN_ID_FIELD_NUMBER: _ClassVar[int]
    ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    LAST_HANDSHAKE_UNIX_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    public_key: str
    host_id: str
    join_id: str
    endpoint: str
    last_handshake_unix: int
    reachable: bool
    rtt_ms: float
    detail: str
    def __init__(self, public_key: _Optional[str] = ..., host_id: _Optional[str] = ..., join_id: _Optional[str] = ..., endpoint: _Optional[str] = ..., last_handshake_unix: _Optional[int] = ..., reachable: _Optional[bool] = ..., rtt_ms: _Optional[float] = ..., detail: _Optional[str] = ...) -> None: ...

class MemberCheck(_message.Message):
    __slots__ = ("sandbox_id", "host_id", "address", "reachable", "rtt_ms", "detail")
    SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    ADDRESS_FIELD_NUMBER: _ClassVar[int]
    REACHABLE_FIELD_NUMBER: _ClassVar[int]
    RTT_MS_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    sandbox_id: str
    host_id: str
    address: str
    reachable: bool
    rtt_ms: float
    detail: str
    def __init__(self, sandbox_id: _Optional[str] = ..., host_id: _Optional[str] = ..., address: _Optional[str] = ..., reachable: _Optional[bool] = ..., rtt_ms: _Optional[float] = ..., detail: _Optional[str] = ...) -> None: ...

class AliasCheck(_message.Message):
    __slots__ = ("name", "expected_address", "resolved_address", "ok", "detail")
    NAME_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    RESOLVED_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    OK_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    name: str
    expected_address: str
    resolved_address: str
    ok: bool
    detail: str
    def __init__(self, name: _Optional[str] = ..., expected_address: _Optional[str] = ..., resolved_address: _Optional[str] = ..., ok: _Optional[bool] = ..., detail: _Optional[str] = ...) -> None: ...

class PolicyCheck(_message.Message):
    __slots__ = ("from_sandbox_id", "to_sandbox_id", "port", "protocol", "verdict", "rule_id")
    FROM_SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    TO_SANDBOX_ID_FIELD_NUMBER: _ClassVar[int]
    PORT_FIELD_NUMBER: _ClassVar[int]
    PROTOCOL_FIELD_NUMBER: _ClassVar[int]
    VERDICT_FIELD_NUMBER: _ClassVar[int]
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    from_sandbox_id: str
    to_sandbox_id: str
    port: int
    protocol: str
    verdict: str
    rule_id: str
    def __init__(self, from_sandbox_id: _Optional[str] = ..., to_sandbox_id: _Optional[str] = ..., port: _Optional[int] = ..., protocol: _Optional[str] = ..., verdict: _Optional[str] = ..., rule_id: _Optional[str] = ...) -> None: ...

class NetworkDiagnosis(_message.Message):
    __slots__ = ("host_id", "network_id", "mesh_address", "interface", "implementation", "peers", "members", "aliases", "policies", "rules_installed")
    HOST_ID_FIELD_NUMBER: _ClassVar[int]
    NETWORK_ID_FIELD_NUMBER: _ClassVar[int]
    MESH_ADDRESS_FIELD_NUMBER: _ClassVar[int]
    INTERFACE_FIELD_NUMBER: _ClassVar[int]
    IMPLEMENTATION_FIELD_NUMBER: _ClassVar[int]
    PEERS_FIELD_NUMBER: _ClassVar[int]
    MEMBERS_FIELD_NUMBER: _ClassVar[int]
    ALIASES_FIELD_NUMBER: _ClassVar[int]
    POLICIES_FIELD_NUMBER: _ClassVar[int]
    RULES_INSTALLED_FIELD_NUMBER: _ClassVar[int]
    host_id: str
    network_id: str
    mesh_address: str
    interface: str
    implementation: str
    peers: _containers.RepeatedCompositeFieldContainer[PeerCheck]
    members: _containers.RepeatedCompositeFieldContainer[MemberCheck]
    aliases: _containers.RepeatedCompositeFieldContainer[AliasCheck]
    policies: _containers.RepeatedCompositeFieldContainer[PolicyCheck]
    rules_installed: bool
    def __init__(self, host_id: _Optional[str] = ..., network_id: _Optional[str] = ..., mesh_address: _Optional[str] = ..., interface: _Optional[str] = ..., implementation: _Optional[str] = ..., peers: _Optional[_Iterable[_Union[PeerCheck, _Mapping]]] = ..., members: _Optional[_Iterable[_Union[MemberCheck, _Mapping]]] = ..., aliases: _Optional[_Iterable[_Union[AliasCheck, _Mapping]]] = ..., policies: _Optional[_Iterable[_Union[PolicyCheck, _Mapping]]] = ..., rules_installed: _Optional[bool] = ...) -> None: ...
