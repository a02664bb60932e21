// Package volumes owns azoted's volume records (table "volumes"), their
// backing files and their data keys: creation under the volume quota,
// look-up, deletion with a recovery window, restore, purge (crypto-erase),
// the claim and release an instance makes inside its own transaction, and
// the key each launch hands a card.
//
// It never reads or writes a volume's contents: a volume made from an
// image is filled by the rootfs card through the Fill hook, an imported
// one by the fill card through the Import hook (the upload passes through
// on its way to the card, unstored; the volume is "creating" meanwhile,
// and removed if the import fails or a restart interrupts it), and its
// plaintext key exists here only in locked memory, on its way to a card.
// It does not know instances beyond their ids: the instances package
// claims and releases volumes, and decides when.
package volumes
