"""Results and figures: netCDF Datasets with provenance, byte-stable figures, the shared schema.

- ``save_result``, ``load_result``, ``same_content`` (netCDF, CF-style attributes) → :mod:`.netcdf`
- ``figure``, ``savefig``, the shipped style, drawing helpers                     → :mod:`.figures`
- dimension and variable names shared by every trajectory                         → :mod:`.schema`
"""

from reluflow.results.netcdf import load_result, provenance, same_content, save_result

__all__ = ["load_result", "provenance", "same_content", "save_result"]
