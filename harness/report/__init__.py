"""What a run leaves behind: results.json, summary.md, report.html, junit.xml, and comparing runs."""
