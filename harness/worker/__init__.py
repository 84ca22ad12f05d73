"""A model served from a child process: a native crash or a hang fails one request, not the session."""
