"""The first schema: products (the catalog), meta (row count, vectors generation, the change counter),
artifacts (manifest.json and what tune writes), events (shoppers).

Revision ID: 0001
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    text, big = sa.Text(), sa.BigInteger()
    op.create_table(
        "products",
        sa.Column("id", text, primary_key=True), sa.Column("row", big, unique=True),
        *[sa.Column(c, text) for c in ("name", "type", "gender", "colour")],
        sa.Column("price", sa.Float(precision=53)), sa.Column("currency", text), sa.Column("url", text),
        sa.Column("in_stock", sa.Boolean(), nullable=False, server_default=sa.true()),
        *[sa.Column(c, text) for c in ("category", "subcategory", "season", "usage", "image_path", "image_sha256", "extra")],
    )
    op.create_index("products_image_sha256", "products", ["image_sha256"])
    op.create_table("meta", sa.Column("key", text, primary_key=True), sa.Column("value", text, nullable=False))
    # version: +1 in every transaction that changes anything, so each replica knows when to re-read.
    op.bulk_insert(sa.table("meta", sa.column("key"), sa.column("value")),
                   [{"key": "n_rows", "value": "0"}, {"key": "generation", "value": "0"}, {"key": "version", "value": "0"}])
    op.create_table("artifacts", sa.Column("name", text, primary_key=True), sa.Column("data", sa.LargeBinary(), nullable=False),
                    sa.Column("updated", sa.DateTime(timezone=True), server_default=sa.func.now(), nullable=False))
    op.create_table(
        "events",
        sa.Column("seq", big, sa.Identity(), primary_key=True), sa.Column("shopper", text, nullable=False),
        sa.Column("kind", text, nullable=False), sa.Column("product_id", text), sa.Column("sha256", text),
        sa.Column("vector", sa.LargeBinary()), sa.Column("at", sa.Float(precision=53), nullable=False),
    )
    op.create_index("events_by_shopper", "events", ["shopper", "seq"])


def downgrade() -> None:
    for table in ("events", "artifacts", "meta", "products"):
        op.drop_table(table)
