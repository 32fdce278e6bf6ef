"""Historical imports: order exports (streamed, set-based), members, opening balances and tiers.

- `reading`: the files people really have (encodings, delimiters, headers, dates, amounts), in Python.
- `orders`: `orders_import()`, the engine behind `manage.py import_orders` and the admin's order import: the file
  goes in batches into a staging table (`staging`: COPY on PostgreSQL), is validated and written set-based in SQL
  (`rows`, with `edges` for the API's edge rules), then one backfill pass (`backfill`) brings the members'
  aggregates, growth, points and tiers up to date.
- `lifecycle`: what every import shares: the report, the ImportRun bookkeeping (start, counts, complete, fail, dry
  run, --strict) and the rejected-rows writer; used by the order import, points.opening_balances and the member
  import (members.resources).
- `console`: what the import commands print (--map, the progress bar, the rejected lines).
"""
from .reading import (  # noqa: F401
    FIELDS,
    REQUIRED,
    ImportFileError,
    ImportRow,
    detect_encoding,
    map_headers,
    parse_amount,
    parse_placed_at,
    parse_status,
    read_orders,
)
