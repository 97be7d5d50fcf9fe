"""What people and other tools read about a run: text and JSON summaries, the HTML report, the progress bar."""
