"""tokentrail: a token authority and accountability ledger.

Every token comes through a declared issuance path, carries its lineage back to
the credential that produced it, and dies with any of its ancestors.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]
