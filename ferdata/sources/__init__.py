"""Raw dataset readers, one module per dataset; :mod:`ferdata.sources.registry` lists them."""
