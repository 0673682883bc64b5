"""Use cases the GUI and the CLI share (Qt-free): train and register, forget a user, the
bundle that ranks in a workspace, suite runs, insights.  Screens and commands call these;
neither composes core steps itself."""
