"""The store on disk: blobs, layers, images, refs, gc, fsck, export/import and the registry client."""
