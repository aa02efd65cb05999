"""HTTP and WebSocket routes of the control plane, one module per resource area.

Each module has `routes(cp) -> list[BaseRoute]`; `api.build_app` joins them.
"""
