"""The ``pt`` command line: a thin layer over the APIs of pt_data, pipelines, pt_model and pt_bench."""
