// Where nkitd serves its API, in a module of its own: the CLI names it before it loads the client.

/** The socket path nkitd serves the API on, under its run dir. */
export const API_SOCKET_NAME = "nkit.sock";
export const DEFAULT_API_SOCKET = "/run/nkit/nkit.sock";
