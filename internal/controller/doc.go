// Package controller is azoted: it owns the state store, serves the
// controller API, and starts, supervises and re-adopts each instance's
// engine process.
//
// The controller is passive: it listens and answers, and never opens an
// outbound network connection. Instance processes run in sessions of their
// own, so killing azoted (even with SIGKILL) leaves guests running; the
// next azoted re-adopts them from the store and repairs any operation a
// crash interrupted.
package controller
