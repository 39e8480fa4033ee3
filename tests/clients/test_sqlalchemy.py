"""sqlalchemy-rqlite (PyPI), unmodified: an ORM round trip through the pyrqlite driver."""

from sqlalchemy import (Boolean, Column, Float, ForeignKey, Integer, LargeBinary, String,
                        create_engine, func, inspect, select)
from sqlalchemy.orm import Session, declarative_base, relationship

Base = declarative_base()


class Author(Base):
    __tablename__ = "sa_authors"
    id = Column(Integer, primary_key=True)
    name = Column(String(50), nullable=False, unique=True)
    books = relationship("Book", back_populates="author", cascade="all, delete-orphan")


class Book(Base):
    __tablename__ = "sa_books"
    id = Column(Integer, primary_key=True)
    title = Column(String(100), nullable=False)
    price = Column(Float)
    in_print = Column(Boolean, default=True)
    # No Date/DateTime column: pyrqlite turns the server's RFC 3339 text into a date object and
    # SQLAlchemy 2's SQLite result processor then fails on it (str expected). That happens
    # against rqlite too; it is a client-stack limit, not a server difference.
    cover = Column(LargeBinary)
    author_id = Column(Integer, ForeignKey("sa_authors.id"), nullable=False)
    author = relationship("Author", back_populates="books")


def engine_for(node):
    return create_engine(f"rqlite+pyrqlite://{node.host_port}/")


def test_orm_round_trip(single):
    engine = engine_for(single)
    Base.metadata.create_all(engine)
    assert {"sa_authors", "sa_books"} <= set(inspect(engine).get_table_names())
    # create_all is idempotent: it reflects the existing tables and creates nothing.
    Base.metadata.create_all(engine)

    with Session(engine) as s:
        ursula = Author(name="Ursula")
        ursula.books = [
            Book(title="The Dispossessed", price=9.5, cover=b"\x89PNG\x00\xff"),
            Book(title="The Lathe of Heaven", price=7.25, in_print=False),
        ]
        s.add(ursula)
        s.add(Author(name="Iain", books=[Book(title="Excession", price=8.0)]))
        s.commit()
        ursula_id = ursula.id
        assert ursula_id is not None

    with Session(engine) as s:
        got = s.scalars(select(Book).order_by(Book.id)).all()
        assert [b.title for b in got] == ["The Dispossessed", "The Lathe of Heaven", "Excession"]
        first = got[0]
        assert first.price == 9.5
        assert first.in_print is True
        assert first.cover == b"\x89PNG\x00\xff"
        assert first.author.name == "Ursula"
        assert got[1].in_print is False and got[1].cover is None
        total = s.scalar(select(func.sum(Book.price)).where(Book.author_id == ursula_id))
        assert total == 16.75

        # Update.
        first.price = 11.0
        s.commit()
    with Session(engine) as s:
        assert s.scalar(select(Book.price).where(Book.title == "The Dispossessed")) == 11.0

        # Delete, cascading to the author's books.
        s.delete(s.scalar(select(Author).where(Author.name == "Ursula")))
        s.commit()
    with Session(engine) as s:
        assert [a.name for a in s.scalars(select(Author))] == ["Iain"]
        assert [b.title for b in s.scalars(select(Book))] == ["Excession"]

    Base.metadata.drop_all(engine)
    assert not {"sa_authors", "sa_books"} & set(inspect(engine).get_table_names())


def test_reflection(single):
    """SQLAlchemy's SQLite reflection runs PRAGMAs through /db/query.

    Not get_columns(), get_pk_constraint() or Table(autoload_with=...): sqlalchemy-rqlite 2.0 reports no server
    version, and SQLAlchemy's SQLite get_columns() compares it (a client-stack limit that no
    server answer changes)."""
    engine = engine_for(single)
    Base.metadata.create_all(engine)
    try:
        insp = inspect(engine)
        fks = insp.get_foreign_keys("sa_books")
        assert [(f["constrained_columns"], f["referred_table"]) for f in fks] \
            == [(["author_id"], "sa_authors")]
        uniques = insp.get_unique_constraints("sa_authors")
        assert [u["column_names"] for u in uniques] == [["name"]]
        assert insp.has_table("sa_books") and not insp.has_table("sa_nothing")
        indexes = insp.get_indexes("sa_books")
        assert indexes == []
    finally:
        Base.metadata.drop_all(engine)
