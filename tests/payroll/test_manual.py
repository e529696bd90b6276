"""Manual-items CSV: taken whole or refused whole, every problem with its line and
column."""

from __future__ import annotations

from decimal import Decimal

from services.payroll.manual import parse_csv

ITEMS = ["qa_score", "absences"]
ROSTER = {"b00", "b01", "t00"}


def test_wide_csv_with_bom_and_blank_cells_gives_one_value_per_filled_cell() -> None:
    text = "\ufeffagent_id,qa_score,absences\nb00,92.5,1\nb01,,0\n\nt00,88,\n"
    parsed = parse_csv(text, ITEMS, ROSTER)
    assert parsed.problems == []
    assert parsed.values == [
        ("b00", "qa_score", Decimal("92.5")),
        ("b00", "absences", Decimal(1)),
        ("b01", "absences", Decimal(0)),
        ("t00", "qa_score", Decimal(88)),
    ]


def test_every_bad_cell_is_reported_by_line_and_column_and_nothing_kept() -> None:
    text = "agent_id,qa_score,absences\nb00,ninety,1\nzz9,80,0\nb00,70,0\nt00,NaN,1,7\nb01,90,x\n"
    parsed = parse_csv(text, ITEMS, ROSTER)
    assert parsed.problems == [
        "line 2, column 2 (qa_score): 'ninety' is not a number",
        "line 3, column 1: agent 'zz9' is not in the roster",
        "line 4: agent 'b00' already on line 2",
        "line 5: 4 cells, the header has 3",
        "line 6, column 3 (absences): 'x' is not a number",
    ]


def test_unknown_item_column_names_the_items_the_scorecards_use() -> None:
    parsed = parse_csv("agent_id,qa_scor\nb00,1\n", ITEMS, ROSTER)
    assert parsed.problems == [
        "line 1, column 2: unknown item 'qa_scor' (the scorecards use: qa_score, absences)"
    ]
    assert parsed.values == []


def test_header_must_start_with_agent_id() -> None:
    assert parse_csv("agent,qa_score\n", ITEMS, ROSTER).problems[0].startswith("line 1:")
    assert parse_csv("", ITEMS, ROSTER).problems


def test_without_a_roster_any_agent_id_is_taken() -> None:
    parsed = parse_csv("agent_id,absences\nnew-hire,2\n", ITEMS, None)
    assert parsed.values == [("new-hire", "absences", Decimal(2))]
