"""Python bindings of `proto/globalstacks/agent/v1/control_plane.proto`.

`pb` is the generated module; import messages from it (`pb.Envelope`, ...).
"""

from gstacks_proto.globalstacks.agent.v1 import control_plane_pb2 as pb

__all__ = ["pb"]
