"""The migrations build exactly the schema the models describe."""

from __future__ import annotations

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from flask_migrate import upgrade

from portal.extensions import db
from tests.support.accounts import OPAY_IV, OPAY_KEY, OPAY_MERCHANT_ID
from tests.support.apps import make_app


# SQLite cannot reflect expression indexes; the order search's trigram indexes are PostgreSQL's only (ddl_if).
@pytest.mark.filterwarnings("ignore:autogenerate skipping metadata-specified expression-based index:UserWarning")
def test_upgrade_from_empty_matches_the_models(tmp_path):
    app = make_app(tmp_path, DATABASE_URL=f"sqlite:///{tmp_path / 'migrated.db'}")
    with app.app_context():
        db.drop_all()
        with db.engine.begin() as conn:
            conn.exec_driver_sql("DROP TABLE IF EXISTS alembic_version")
        upgrade()
        with db.engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn), db.metadata)
        assert diff == [], diff
        db.engine.dispose()


def test_demo_data_is_idempotent_and_prints_logins(tmp_path):
    app = make_app(tmp_path)
    runner = app.test_cli_runner()
    first = runner.invoke(args=["demo-data"])
    second = runner.invoke(args=["demo-data"])
    assert first.exit_code == 0 and second.exit_code == 0
    assert "admin@demo.example" in first.output and "staff@demo.example" in first.output
    from portal.models import Merchant, User

    with app.app_context():
        assert db.session.query(Merchant).filter_by(slug="demo").count() == 1
        assert db.session.query(User).count() == 2
        db.engine.dispose()


def test_cli_merchant_and_user_create(tmp_path):
    app = make_app(tmp_path)
    runner = app.test_cli_runner()
    result = runner.invoke(
        args=[
            "merchant",
            "create",
            "tea",
            "--name",
            "茶行",
            "--opay-merchant-id",
            OPAY_MERCHANT_ID,
            "--opay-hash-key",
            OPAY_KEY,
            "--opay-hash-iv",
            OPAY_IV,
        ]
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        args=["user", "create", "Boss@Tea.example", "--merchant", "tea", "--role", "admin"], input="a-long-password\n"
    )
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        args=["user", "create", "x@tea.example", "--merchant", "tea", "--role", "admin"], input="short\n"
    )
    assert result.exit_code != 0 and "12 characters" in result.output
    result = runner.invoke(
        args=["user", "create", "y@tea.example", "--merchant", "nope", "--role", "staff"], input="a-long-password\n"
    )
    assert result.exit_code != 0 and "no merchant" in result.output
    from portal.models import Merchant, User

    with app.app_context():
        merchant = db.session.query(Merchant).filter_by(slug="tea").one()
        assert merchant.opay_hash_key_enc and OPAY_KEY not in merchant.opay_hash_key_enc
        assert db.session.query(User).filter_by(email="boss@tea.example").one().role == "admin"
        db.engine.dispose()


def test_provider_ids_are_unique_in_the_database_and_several_may_be_empty(tmp_path):
    """Issue 12, item 10: a duplicate provider id made every callback for it answer 503 MultipleResultsFound."""
    import pytest
    from sqlalchemy.exc import IntegrityError

    from portal.models import Merchant

    app = make_app(tmp_path)
    with app.app_context():
        db.session.add_all([Merchant(slug=f"empty{i}", name="x") for i in range(3)])  # NULLs: allowed
        db.session.commit()
        for column in ("oen_merchant_id", "mypay_store_uid", "opay_merchant_id"):
            db.session.add(Merchant(slug=f"{column}1", name="x", **{column: "same"}))
            db.session.commit()
            db.session.add(Merchant(slug=f"{column}2", name="x", **{column: "same"}))
            with pytest.raises(IntegrityError):
                db.session.commit()
            db.session.rollback()
        db.engine.dispose()


def test_cli_refuses_a_provider_id_another_merchant_uses(tmp_path):
    app = make_app(tmp_path)
    runner = app.test_cli_runner()
    first = runner.invoke(args=["merchant", "create", "one", "--name", "One", "--oen-merchant-id", "dup"])
    second = runner.invoke(args=["merchant", "create", "two", "--name", "Two", "--oen-merchant-id", "dup"])
    assert first.exit_code == 0, first.output
    assert second.exit_code != 0 and "already uses" in second.output
    with app.app_context():
        db.engine.dispose()
