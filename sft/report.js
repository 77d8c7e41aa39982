// What every page sft writes (the evaluation report, the audit) needs: inlined into each page.
const el = (tag, attrs = {}, ...children) => {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  return node;
};

// A click on a header of `table` with a data-key sorts `rows` by that key, highest first, and hands
// them to `draw`; a second click, lowest first.
function sortable(table, rows, draw) {
  for (const th of table.querySelectorAll("th[data-key]")) {
    th.addEventListener("click", () => {
      const key = th.dataset.key, descending = !th.classList.contains("desc");
      table.querySelectorAll("th").forEach((h) => h.classList.remove("asc", "desc"));
      th.classList.add(descending ? "desc" : "asc");
      const sign = descending ? -1 : 1;
      draw([...rows].sort((a, b) =>
        sign * (typeof a[key] === "number" ? a[key] - b[key] : String(a[key]).localeCompare(String(b[key])))));
    });
  }
}
