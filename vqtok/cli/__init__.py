"""Command line interface: ``vqtok train|encode|decode|eval|demo|bench|list`` (see ``vqtok --help``)."""
