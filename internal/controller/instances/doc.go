// Package instances owns azoted's instance records (table "instances")
// and everything that lives while an instance runs: the launch, the card
// of each attached volume, the engine's machine, the supervisor that turns
// console reports, resets and exits into state, the console and logs, the
// attach and detach of volumes, and the re-adoption of machines and cards
// after an azoted restart.
//
// It claims and releases volumes through the volumes package inside its
// own transactions, and gets images from the images package; it never
// touches their tables directly. It never opens a volume's contents: the
// cards do.
package instances
