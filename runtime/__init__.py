"""The I/O every service shares: the DCF datagram endpoint, the HTTP server,
and the process lifecycle (signals, graceful drain).

``hydramesh.common`` stays free of I/O; whatever touches a socket or the
process and is used by more than one of head, worker, shim and client lives
here.
"""
