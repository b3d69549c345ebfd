"""A catalog in PostgreSQL with pgvector (`store.PostgresCatalog`, registered for `postgresql://` and
`postgres://` locations): the database holds everything (model fingerprint, preprocessing, items, product
fields, image bytes, vectors), so any number of servers can share it and see each change at their next
request.

Needs PostgreSQL 13+ with pgvector 0.8+ (`pip install 'fashionrec[postgres]'` for the client side);
`fashionrec.index.postgres.embedded` starts one in a data folder. Nothing is imported here, so that the
command line can check a catalog name (`names`) without loading the database client.
"""
