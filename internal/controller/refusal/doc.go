// Package refusal is how azoted's domain packages (images, volumes,
// instances) refuse a request: an error that says which refusal it is, a
// sentinel compared with errors.Is, and carries the sentence the caller
// reads.
//
// It never names a wire code or an HTTP status: the gateway alone maps
// the sentinels to those, in one table.
package refusal
