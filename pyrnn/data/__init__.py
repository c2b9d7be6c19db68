"""Small public-domain data shipped with pyrnn, for examples and learning tests.

``sonnets()``: six of Shakespeare's sonnets (I, XVIII, XXIX, LXXIII, CXVI, CXXX; public
domain, modern spelling), about 3.7 KB of text for character-level language models.
"""
from importlib import resources


def sonnets():
    """The text of pyrnn/data/sonnets.txt as a str."""
    return resources.files(__name__).joinpath("sonnets.txt").read_text(encoding="utf-8")


__all__ = ["sonnets"]
