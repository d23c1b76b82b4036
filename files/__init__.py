"""Users' files: one reader stack (formats, encoding detection, malformed rows kept) and atomic writes."""
