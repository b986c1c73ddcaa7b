//! Splicing text into a domain's XML (pure): edits at byte ranges of the original, applied
//! together, and new children indented like their siblings, so that every byte not edited stays
//! as it was.

use std::ops::Range;

use roxmltree::Node;

/// XML-escapes text for an attribute or element value.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\'' => out.push_str("&apos;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

pub(super) fn fill(template: &str, values: &[(&str, &str)]) -> String {
    let mut s = template.to_owned();
    for (k, v) in values {
        s = s.replace(&format!("{{{k}}}"), v);
    }
    s
}

/// Text edits: (range of the original, replacement), applied together.
#[derive(Default)]
pub(super) struct Edits(Vec<(Range<usize>, String)>);

impl Edits {
    pub(super) fn replace(&mut self, r: Range<usize>, with: impl Into<String>) {
        self.0.push((r, with.into()));
    }

    pub(super) fn insert(&mut self, at: usize, text: impl Into<String>) {
        self.0.push((at..at, text.into()));
    }

    pub(super) fn apply(mut self, original: &str) -> String {
        // From the end, so earlier offsets stay valid; inserts at one place keep their order.
        self.0.sort_by_key(|e| std::cmp::Reverse(e.0.start));
        let mut s = original.to_owned();
        let mut last_at = usize::MAX;
        let mut pending: Vec<(Range<usize>, String)> = Vec::new();
        let flush = |s: &mut String, pending: &mut Vec<(Range<usize>, String)>| {
            // Same position: inserted in the order they were added.
            for (r, text) in pending.drain(..).rev() {
                s.replace_range(r, &text);
            }
        };
        for (r, text) in self.0 {
            if r.start != last_at {
                flush(&mut s, &mut pending);
                last_at = r.start;
            }
            pending.push((r, text));
        }
        flush(&mut s, &mut pending);
        s
    }
}

pub(super) fn child<'a, 'i>(n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
    n.children()
        .find(|c| c.is_element() && c.tag_name().name() == name)
}

pub(super) fn children<'a, 'i>(
    n: Node<'a, 'i>,
    name: &'a str,
) -> impl Iterator<Item = Node<'a, 'i>> + 'a {
    n.children()
        .filter(move |c| c.is_element() && c.tag_name().name() == name)
}

/// Where to insert new children of `n`: before its closing tag, or (for `<x/>`) by turning it
/// into `<x>...</x>`; and the indentation of its children.
fn insert_point(n: Node, text: &str) -> (usize, Option<String>, String) {
    let r = n.range();
    let inner_indent = n
        .children()
        .rfind(|c| c.is_element())
        .map(|c| line_indent(text, c.range().start))
        .unwrap_or_else(|| format!("{}  ", line_indent(text, r.start)));
    if text[r.clone()].ends_with("/>") {
        return (r.start, Some(n.tag_name().name().to_owned()), inner_indent);
    }
    let close = text[..r.end].rfind("</").unwrap_or(r.end);
    (close, None, inner_indent)
}

pub(super) fn line_indent(text: &str, pos: usize) -> String {
    let line_start = text[..pos].rfind('\n').map_or(0, |i| i + 1);
    text[line_start..pos]
        .chars()
        .take_while(|c| *c == ' ' || *c == '\t')
        .collect()
}

/// Indents a (multi-line) fragment by `indent`, ending with a newline and the closing tag's
/// indentation.
fn indented(fragment: &str, indent: &str, close_indent: &str) -> String {
    let mut out = String::new();
    for line in fragment.trim_end().lines() {
        out.push_str(indent);
        out.push_str(line);
        out.push('\n');
    }
    out.push_str(close_indent);
    out
}

/// Adds `fragment` as the last child of `n`.
pub(super) fn append_child(edits: &mut Edits, text: &str, n: Node, fragment: &str) {
    let (at, selfclosing, indent) = insert_point(n, text);
    let close_indent = line_indent(text, n.range().start);
    match selfclosing {
        Some(tag) => {
            let r = n.range();
            let open = text[r.clone()].trim_end_matches("/>").trim_end().to_owned();
            edits.replace(
                r,
                format!(
                    "{open}>\n{}</{tag}>",
                    indented(fragment, &indent, &close_indent)
                ),
            );
        }
        None => {
            // Before the closing tag, which sits at `close_indent` on its own line (or not).
            let before = &text[..at];
            let on_own_line = before.trim_end_matches([' ', '\t']).ends_with('\n');
            let start = if on_own_line {
                before.trim_end_matches([' ', '\t']).len()
            } else {
                at
            };
            let lead = if on_own_line { "" } else { "\n" };
            edits.replace(
                start..at,
                format!("{lead}{}", indented(fragment, &indent, &close_indent)),
            );
        }
    }
}

/// Applies the edits and the new children (each parent's in one edit).
pub(super) fn finish(text: &str, mut edits: Edits, appends: Vec<(Node, String)>) -> String {
    let mut parents: Vec<Node> = Vec::new();
    for (p, _) in &appends {
        if !parents.contains(p) {
            parents.push(*p);
        }
    }
    for p in parents {
        let frags: Vec<&str> = appends
            .iter()
            .filter(|(q, _)| *q == p)
            .map(|(_, f)| f.trim_end())
            .collect();
        append_child(&mut edits, text, p, &frags.join("\n"));
    }
    edits.apply(text)
}
