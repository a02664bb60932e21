// Package proc identifies, watches and signals the processes azoted
// starts (engines and cards), which outlive azoted and are re-adopted by
// pid and start time. It never signals a process whose identity it has not
// just checked again. It also reads who is at the other end of a unix
// socket (PeerCred), which is how azoted and the cards tell root callers,
// and binds the sockets azoted hands to the processes it starts (ListenFile).
package proc
