"""The asset inventory: the city's systems, the departments that own them and who to tell.

`load_inventory(path)` reads YAML or CSV (see docs/inventory.md) and raises InventoryError with
every problem; `Inventory.lookup(value)` / `match_entities(...)` find the asset of an IP address,
host name or URL.
"""

from hcm_soc.inventory.loader import departments_file_for, load_inventory, read_inventory, validate_inventory
from hcm_soc.inventory.lookup import Inventory
from hcm_soc.inventory.model import (
    SECTORS,
    SENSITIVITIES,
    Asset,
    AssetMatch,
    Contact,
    Department,
    InventoryError,
    Problem,
    Sector,
    Sensitivity,
)

__all__ = [
    "SECTORS",
    "SENSITIVITIES",
    "Asset",
    "AssetMatch",
    "Contact",
    "Department",
    "Inventory",
    "InventoryError",
    "Problem",
    "Sector",
    "Sensitivity",
    "departments_file_for",
    "load_inventory",
    "read_inventory",
    "validate_inventory",
]
