"""What a run is set to: the settings and their resolution, the gates, the profiles and the time budget."""
