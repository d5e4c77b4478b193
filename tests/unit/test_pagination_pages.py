"""One way to build a page: ``keyset`` narrows the query, ``rows_page`` renders the rows."""

from __future__ import annotations

from sqlalchemy import Integer, column, select, table

from medic_core.store.pagination import decode_cursor, encode_cursor, keyset, rows_page

ITEMS = table("items", column("id", Integer))


def test_a_full_page_with_nothing_after_it_has_no_cursor() -> None:
    page = rows_page([5, 4, 3], 3, lambda row: {"id": row}, lambda row: row)
    assert page.items == [{"id": 5}, {"id": 4}, {"id": 3}]
    assert page.next_cursor is None


def test_the_extra_row_gives_the_cursor_of_the_last_row_shown() -> None:
    page = rows_page([5, 4, 3, 2], 3, str, lambda row: row)
    assert page.items == ["5", "4", "3"]
    assert page.next_cursor is not None and decode_cursor(page.next_cursor) == 3


def test_keyset_reads_past_the_cursor_in_the_lists_order() -> None:
    oldest_first = str(keyset(select(ITEMS), ITEMS.c.id, encode_cursor(7), 10).compile())
    newest_first = str(
        keyset(select(ITEMS), ITEMS.c.id, encode_cursor(7), 10, newest_first=True).compile()
    )
    assert "items.id > :id_1" in oldest_first and "ORDER BY items.id\n" in oldest_first + "\n"
    assert "items.id < :id_1" in newest_first and "ORDER BY items.id DESC" in newest_first
    first_page = str(keyset(select(ITEMS), ITEMS.c.id, None, 10).compile())
    assert "WHERE" not in first_page and "LIMIT" in first_page
