"""One module per screen of the main window (Data, Train, Query, ...)."""
