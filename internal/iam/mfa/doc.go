// Package mfa implements azote's virtual MFA devices: RFC 6238 time-based
// one-time passwords (HMAC-SHA-1, 6 digits, 30 s steps) built on RFC 4226
// HOTP, the otpauth:// provisioning URI, a QR code drawn in a terminal for
// enrolment, and the per-device state that makes each code single-use and
// locks a device after repeated wrong codes.
//
// The package never reads the clock on the verification path: every
// decision is a function of the Device state and the time the caller passes
// in, so the caller (and its tests) own time. It never stores anything
// either: the caller persists a Device, encrypting Secret first, and must
// load, verify and store it under one lock or transaction, or two concurrent
// requests could both spend the same code. It never logs and never returns
// or formats a secret or an expected code in an error.
package mfa
