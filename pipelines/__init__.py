"""Ray Data curation jobs over pt_data blocks, one source adapter per corpus; issue #3."""
