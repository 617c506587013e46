"""Model families: one module each; the registry is filled in below."""
