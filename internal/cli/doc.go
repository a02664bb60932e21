// Package cli is the azote command: `azote <noun> <verb>` over azoted's
// API, built on cobra and pflag. Tables by default, -o json or -o yaml and
// --query (a jq expression) for scripts, progress on stderr for long work,
// one line and exit 1 on error, exit 2 for a command-line mistake.
// Credentials come from the AWS shared config and credentials files and
// environment, through the AWS SDK's loader, so one profile serves azote
// and aws.
//
// It is a client only: it never links the state store, bbolt or IAM
// policy evaluation (a test of the binaries' dependencies checks it), and
// it holds no secret but the caller's own keys.
package cli
