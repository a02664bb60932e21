// Package audit is azote's tamper-evident audit trail, in AWS CloudTrail's
// formats so that people and tools that read CloudTrail can read it.
//
// A Trail appends event records (CloudTrail's record contents and
// userIdentity element) durably: Append returns only after the record is
// fsynced to a journal, and concurrent Appends share one write and one
// fdatasync (group commit). The journal is periodically finished into a
// gzip log file holding {"Records":[…]}, and at each such rotation (and
// at least every DigestEvery) a digest file lists the logs finished since
// the last one with their SHA-256, names the previous digest with its
// hash and signature, and is signed SHA256withRSA. Validate walks that chain backwards and reports what was
// modified, deleted, dropped, reordered or left unlisted; Lookup searches
// the records; Collect copies a trail off the host, refusing any digest
// that does not extend the chain it already holds under a pinned key.
//
// Every record's client-chosen strings (userAgent, identity fields, ARNs,
// errorMessage) are cut to MaxFieldBytes or MaxMessageBytes before they are
// written. A failed journal write (a full disk, an I/O error) makes every
// Append fail until the trail has cut that journal back to the records it
// acknowledged and finished it, which it tries at most once a second, on
// an Append or on its own; it does not need to be reopened.
//
// The package never writes the value of a secret-looking key (Redact runs
// on every record's free-form maps), never overwrites or deletes a
// finished log or digest, never acknowledges a record that is not on
// disk, never trusts a key because a directory it validates holds it
// unless asked to (Validate with nil keys; PinnedKeys keeps them
// elsewhere), and never signs journal bytes its own writer did not write,
// while it runs or, through the signed journal head (head.go), after a
// crash. It does not log.
//
// Layout, under Config.Dir:
//
//	active/<start>-<id>.jsonl           the journal: one record per line
//	active/<start>-<id>.jsonl.tampered  a journal Open kept aside, unsigned
//	journal.head                        the signed journal head, unless
//	                                    Config.HeadFile puts it elsewhere
//	logs/YYYY/MM/DD/<account>_Azote_<region>_<YYYYMMDDTHHMMZ>_<id>.json.gz
//	digests/YYYY/MM/DD/<account>_Azote-Digest_<region>_<YYYYMMDDTHHMMSSZ>.json.gz
//	digests/…/<digest>.json.gz.sig     the digest's signature, hex
//	public-keys/<fingerprint>.pem       every key that has signed a digest
//
// Where this departs from CloudTrail, and why:
//
//   - Paths. There is no S3: digestS3Bucket, previousDigestS3Bucket and
//     s3Bucket are "local", and the object keys are paths relative to
//     Dir without CloudTrail's AWSLogs/<account>/CloudTrail/<region>/
//     prefix; file names say Azote where CloudTrail says CloudTrail and
//     have no trail-name part (one trail per host).
//   - Log file names carry the minute the log's journal was opened, not
//     the delivery minute, and the id is derived from the journal's name,
//     so finishing a journal twice after a crash cannot deliver its
//     records twice.
//   - Hashes are over the files as stored (gzip bytes), where CloudTrail
//     hashes the uncompressed content: logFiles[].hashValue,
//     previousDigestHashValue and the digest hash in the signing string.
//     Stored bytes are what a collector copies and compares, so a
//     recompressed file is a modified file.
//   - The signature lives in <digest>.sig (hex, as CloudTrail's
//     x-amz-meta-signature header holds it) because a file has no S3
//     metadata. The signing string is CloudTrail's: digestEndTime "\n"
//     bucket/object "\n" hex SHA-256 of the digest "\n" previous
//     signature or "null".
//   - digestPublicKeyFingerprint is CloudTrail's: hex MD5 of the PKCS#1
//     DER public key. public-keys/ holds PKIX PEM ("PUBLIC KEY"), which
//     openssl reads directly.
//   - Digest end times are whole seconds and strictly increase; a digest
//     asked for within the same second as the previous one ends a second
//     later. The first digest's period starts when the trail was first
//     opened (or at its oldest log).
//   - Records: eventTime is always UTC at whole seconds; numbers inside
//     requestParameters, responseElements and additionalEventData come
//     back from Lookup as json.Number; eventCategory, tlsDetails and the
//     other optional fields of recent record versions are not written.
//   - Validate additionally reports logs that no digest lists (CloudTrail's
//     validator only looks at listed ones) and counts logs newer than the
//     newest digest as pending rather than as problems.
package audit
