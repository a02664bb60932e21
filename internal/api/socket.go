package api

// DefaultSocket is where azoted listens unless told otherwise.
const DefaultSocket = "/run/azote/azoted.sock"
