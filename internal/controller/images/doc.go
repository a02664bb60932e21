// Package images owns azoted's image records (table "images") and the
// blobs they name: uploads, content-addressed creation, look-up by id or
// name, deletion and the sweep of blobs no image uses.
//
// It never unpacks a blob (an image's initramfs is its author's and
// hostile; only the rootfs card opens it) and never decides whether an
// instance may use an image: the instances package asks it for one.
package images
