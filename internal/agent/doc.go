// Package agent is azote-agent, the init process of azote guest images, and
// the line format it uses to report to the host on the serial console.
//
// The agent brings the guest up (mounts, modules), reports readiness with
// its boot timings and the vCPUs and memory it sees, and powers the guest
// off or reboots it when the host asks on the control serial port.
//
// Nothing the agent says is trusted by the host for security: a report only
// moves its own instance from pending to running, and the host bounds and
// validates every line it parses.
package agent
