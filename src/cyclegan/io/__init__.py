"""Everything that reads or writes files that matter: atomic writes, images, checkpoints."""
