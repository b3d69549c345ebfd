"""The built-in model families, one module each (see `fashionrec.model.registry`)."""
