from sft.config import Columns, DataConfig
from sft.data.dialogue import dialogue_examples
from sft.data.read import RawRow, RowProblems

COLUMNS = Columns(dialogue_id="dialogue_id", turn="turn", speaker="speaker")


def rows(*specs):
    """RawRows from (dialogue_id, turn, speaker, text, label) tuples."""
    return [RawRow(text, label, dialogue_id, turn, speaker, f"f.csv:{i + 2}")
            for i, (dialogue_id, turn, speaker, text, label) in enumerate(specs)]


def examples(raw_rows, problems=None, **config):
    config = DataConfig(columns=COLUMNS, **config)
    return [u.example for u in dialogue_examples(raw_rows, config, problems or RowProblems(strict=False))]


def test_turns_are_ordered_numerically_and_context_is_oldest_first():
    out = examples(rows(("d", "10", "A", "ten", "x"), ("d", "9", "B", "nine", "x"), ("d", "8", "A", "eight", "x")),
                   context_turns=2)
    assert [(e.text, e.context) for e in out] == [
        ("eight", []), ("nine", ["eight"]), ("ten", ["eight", "nine"])]


def test_context_is_cut_from_the_oldest_turn_and_zero_turns_means_none():
    dialogue = rows(*[("d", str(t), "A", f"turn {t}", "x") for t in range(4)])
    assert examples(dialogue, context_turns=2)[3].context == ["turn 1", "turn 2"]
    assert all(e.context == [] for e in examples(dialogue, context_turns=0))


def test_speaker_prefix_goes_into_the_context_strings():
    out = examples(rows(("d", "0", " Chandler ", "Hi", "joy"), ("d", "1", "Joey", "Hey", "joy")),
                   context_turns=1, context_speaker=True)
    assert out[1].text == "Hey"  # the utterance itself carries no prefix
    assert out[1].context == ["Chandler: Hi"]


def test_dialogues_do_not_mix_and_rows_without_an_id_stand_alone():
    out = examples(rows(("a", "0", "A", "a first", "x"), ("b", "0", "B", "b first", "x"), ("", "1", "C", "lonely", "x"),
                        ("a", "1", "A", "a second", "x"), (None, "2", "C", "alone too", "x")), context_turns=3)
    context = {e.text: (e.dialogue_id, e.context) for e in out}
    assert context["a second"] == ("a", ["a first"])
    assert context["lonely"] == (None, [])
    assert context["alone too"] == (None, [])


def test_unlabelled_turns_are_context_but_no_example_and_empty_texts_are_neither():
    problems = RowProblems(strict=False)
    out = examples(rows(("d", "0", "agent", "How can I help?", ""), ("d", "1", "user", "<br>", "x"),
                        ("d", "2", "user", "My card is lost", "lost_card")), problems, context_turns=2)
    assert [(e.text, e.context) for e in out] == [("My card is lost", ["How can I help?"])]
    assert problems.counts == {"empty_label": 1, "empty_text": 1}
    assert problems.messages["empty_text"] == [
        "f.csv:3: column 'text' is empty after cleaning; expected an utterance (the row is dropped)"]


def test_equal_turn_numbers_keep_file_order_and_words_sort_after_numbers():
    out = examples(rows(("d", "b", "A", "word b", "x"), ("d", "1", "A", "one", "x"), ("d", "1", "A", "one again", "x"),
                        ("d", "a", "A", "word a", "x")), context_turns=0)
    assert [e.text for e in out] == ["one", "one again", "word a", "word b"]


def test_labels_are_normalised_and_texts_cleaned():
    out = examples(rows(("d", "0", "A", "  It\u0092s  fine ", "  Lost   Card ")))
    assert (out[0].text, out[0].label, out[0].source) == ("It’s fine", "Lost Card", "f.csv:2")
