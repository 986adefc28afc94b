"""API types: kind declarations, JSON/YAML codecs, quantities, selectors."""
