"""The kernel side: namespaces, mounts, overlay, cgroups and the container lifecycle."""
