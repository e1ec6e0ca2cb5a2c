//! The operators' status page on the admin listener: one server-rendered HTML document with
//! inline CSS and inline SVG, no JavaScript and no external assets, so it renders offline and
//! from a saved file.
//!
//! This module is pure: the handler gathers a [`StatusPage`] (connector counts, a depth
//! history, recent failures, provisioning-log search results) and [`render`] turns it into
//! HTML. Every string that comes from data (connector names, errors, the search query, log
//! details) is HTML-escaped; numbers are formatted here. The [`health`] rule that colours each
//! connector's badge lives here too, so the page, `status` and any alerting agree.

use std::fmt::Write as _;

/// Everything the page shows. Times are preformatted by the caller (for example
/// `2026-11-23 12:00:00Z`, or a relative `3m`), except `depth_history`, which is Unix ms.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StatusPage {
    pub title: String,
    pub generated_at: String,
    pub connectors: Vec<ConnectorView>,
    pub failures: Vec<FailureView>,
    /// The search box's `q`. `Some` with non-blank text shows the results table and turns the
    /// page's auto-refresh off (so the results don't vanish while being read).
    pub query: Option<String>,
    pub results: Vec<LogView>,
}

/// One connector's card.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ConnectorView {
    pub name: String,
    /// `webhook`, `scim`, or a preset name.
    pub kind: String,
    pub health: Health,
    /// All traffic stopped (kill switch, or a target that answered 410 Gone).
    pub paused: bool,
    /// Deprovisions held by leaver safety; other work still flows.
    pub deprovisions_paused: bool,
    /// Why it is paused or held, as the operator should read it.
    pub reason: Option<String>,
    pub pending: u64,
    pub in_flight: u64,
    pub done: u64,
    pub dead: u64,
    /// Age of the oldest pending delivery, e.g. `3m`.
    pub oldest_pending: Option<String>,
    pub last_success: Option<String>,
    pub last_error: Option<String>,
    /// Queue depth (pending + in flight) samples over the last hour: `(unix ms, depth)`, in
    /// any order. Drawn as at most [`CHART_POINTS`] points.
    pub depth_history: Vec<(i64, u64)>,
}

/// A connector's state as the badge shows it; see [`health`] for the rule.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum Health {
    #[default]
    Ok,
    Degraded,
    Failing,
    Paused,
}

impl Health {
    /// The badge text (the colour is never the only signal).
    pub fn label(self) -> &'static str {
        match self {
            Health::Ok => "OK",
            Health::Degraded => "Degraded",
            Health::Failing => "Failing",
            Health::Paused => "Paused",
        }
    }

    fn class(self) -> &'static str {
        match self {
            Health::Ok => "ok",
            Health::Degraded => "degraded",
            Health::Failing => "failing",
            Health::Paused => "paused",
        }
    }
}

/// One row of "Recent failures": a delivery attempt that failed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FailureView {
    pub at: String,
    pub connector: String,
    /// e.g. `User/2819c223-…`
    pub resource: String,
    /// The HTTP status, if the target answered at all.
    pub status: Option<u16>,
    pub error: String,
}

/// One provisioning-log entry in the search results.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct LogView {
    pub at: String,
    /// `in` (from the IdP) or `out` (to a connector).
    pub direction: String,
    /// The token name (in) or connector name (out).
    pub actor: String,
    pub operation: String,
    pub resource: String,
    pub user_name: Option<String>,
    pub status: Option<u16>,
    /// `ok`, `error`, `dead`, … (free text; `ok`-like and error-like words are coloured).
    pub outcome: String,
    pub latency_ms: Option<u64>,
    pub detail: Option<String>,
}

/// A backlog whose oldest pending delivery is at least this old is Degraded.
pub const DEGRADED_AFTER_SECS: i64 = 60;
/// A backlog this old with the last attempt failing is Failing: errors are not transient.
pub const FAILING_WITH_ERRORS_AFTER_SECS: i64 = 120;
/// A backlog this old is Failing whatever the reason (it is not draining).
pub const FAILING_AFTER_SECS: i64 = 900;
/// The depth chart draws at most this many points (one a minute over the last hour).
pub const CHART_POINTS: usize = 60;
/// The page reloads itself this often, unless it shows search results.
pub const REFRESH_SECS: u32 = 30;

/// The health rule, first match wins:
///
/// 1. **Paused** when all traffic is paused (operator's kill switch, a 410 Gone).
/// 2. **Failing** when work is stuck: something is pending and the oldest pending delivery is
///    at least [`FAILING_AFTER_SECS`] (15 min) old, or at least
///    [`FAILING_WITH_ERRORS_AFTER_SECS`] (2 min) old while the latest attempt failed.
/// 3. **Degraded** when it needs a look but is not stuck: dead letters waiting for an
///    operator (`dead > 0`), the latest attempt failed (`last_error_recent`: the caller's
///    judgement, e.g. the last error is newer than the last success and under 5 min old), or
///    the oldest pending delivery is at least [`DEGRADED_AFTER_SECS`] (1 min) old.
/// 4. **Ok** otherwise.
///
/// `oldest_pending_secs` is ignored when `pending` is 0; a negative age (clock skew) counts
/// as 0.
pub fn health(
    pending: u64,
    dead: u64,
    oldest_pending_secs: Option<i64>,
    last_error_recent: bool,
    paused: bool,
) -> Health {
    if paused {
        return Health::Paused;
    }
    let age = match (pending, oldest_pending_secs) {
        (0, _) | (_, None) => 0,
        (_, Some(secs)) => secs.max(0),
    };
    if pending > 0
        && (age >= FAILING_AFTER_SECS
            || (last_error_recent && age >= FAILING_WITH_ERRORS_AFTER_SECS))
    {
        return Health::Failing;
    }
    if dead > 0 || last_error_recent || age >= DEGRADED_AFTER_SECS {
        return Health::Degraded;
    }
    Health::Ok
}

/// The whole HTML document.
pub fn render(page: &StatusPage) -> String {
    let mut out = String::with_capacity(8192 + 2048 * page.connectors.len());
    let searching = page.query.as_deref().is_some_and(|q| !q.trim().is_empty());
    let title = if page.title.trim().is_empty() {
        "scim-relay status"
    } else {
        page.title.as_str()
    };

    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    if !searching {
        let _ = writeln!(
            out,
            "<meta http-equiv=\"refresh\" content=\"{REFRESH_SECS}\">"
        );
    }
    let _ = writeln!(out, "<title>{}</title>", esc(title));
    out.push_str("<style>");
    out.push_str(CSS);
    out.push_str("</style>\n</head>\n<body>\n");

    render_header(&mut out, page, title, searching);

    out.push_str("<main>\n<section aria-labelledby=\"h-connectors\">\n");
    out.push_str("<h2 id=\"h-connectors\">Connectors</h2>\n");
    if page.connectors.is_empty() {
        out.push_str("<p class=\"empty\">No connectors configured.</p>\n");
    } else {
        out.push_str("<div class=\"cards\">\n");
        for c in &page.connectors {
            render_connector(&mut out, c);
        }
        out.push_str("</div>\n");
    }
    out.push_str("</section>\n");

    render_failures(&mut out, &page.failures);
    render_search(
        &mut out,
        page.query.as_deref().unwrap_or(""),
        searching,
        &page.results,
    );
    out.push_str("</main>\n</body>\n</html>\n");
    out
}

const CSS: &str = "\
*{box-sizing:border-box}\
body{margin:0;font:14px/1.4 system-ui,-apple-system,'Segoe UI',Roboto,'DejaVu Sans',sans-serif;color:#1f2328;background:#f6f8fa}\
header{display:flex;flex-wrap:wrap;align-items:baseline;gap:4px 16px;padding:12px 20px;background:#24292f;color:#fff}\
header h1{margin:0;font-size:18px}\
header .meta{color:#c9d1d9;font-size:12px}\
header .summary{margin-left:auto;display:flex;gap:6px;flex-wrap:wrap}\
main{padding:12px 20px 24px;max-width:1400px}\
h2{font-size:15px;margin:16px 0 8px}\
.cards{display:grid;grid-template-columns:repeat(auto-fill,minmax(320px,1fr));gap:10px}\
.card{background:#fff;border:1px solid #d0d7de;border-left-width:4px;border-radius:6px;padding:10px 12px}\
.card.ok{border-left-color:#1a7f37}.card.degraded{border-left-color:#bf8700}\
.card.failing{border-left-color:#cf222e}.card.paused{border-left-color:#6e7781}\
.card-head{display:flex;align-items:flex-start;gap:8px}\
.card-head div{min-width:0}\
.card-head h3{margin:0;font-size:15px;overflow-wrap:anywhere}\
.kind{display:block;color:#57606a;font-size:12px;overflow-wrap:anywhere}\
.badge{display:inline-block;padding:1px 8px;border-radius:10px;font-size:12px;font-weight:600;white-space:nowrap;border:1px solid}\
.badge.ok{background:#dafbe1;color:#116329;border-color:#4ac26b}\
.badge.degraded{background:#fff8c5;color:#7d4e00;border-color:#d4a72c}\
.badge.failing{background:#ffebe9;color:#a40e26;border-color:#ff8182}\
.badge.paused{background:#eaeef2;color:#424a53;border-color:#afb8c1}\
.card-head .badge{margin-left:auto}\
.notice{margin:6px 0 0;padding:4px 8px;border-radius:4px;background:#fff8c5;font-size:12px;overflow-wrap:anywhere}\
.counts{display:grid;grid-template-columns:repeat(4,1fr);gap:4px;margin:8px 0;text-align:center}\
.counts div{background:#f6f8fa;border-radius:4px;padding:2px 0}\
.counts b{display:block;font-size:16px;font-variant-numeric:tabular-nums}\
.counts span{font-size:11px;color:#57606a}\
.counts .bad b{color:#cf222e}\
dl.facts{display:grid;grid-template-columns:auto 1fr;gap:2px 8px;margin:0;font-size:12px}\
dl.facts dt{color:#57606a}dl.facts dd{margin:0;overflow-wrap:anywhere}\
dd.err{color:#a40e26}\
figure{margin:8px 0 0}\
figure svg{display:block;width:100%;height:auto}\
figcaption{font-size:11px;color:#57606a}\
.empty{color:#57606a;font-style:italic;margin:4px 0}\
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d0d7de;font-size:13px}\
th,td{text-align:left;padding:4px 8px;border-bottom:1px solid #eaeef2;vertical-align:top}\
th{background:#f6f8fa;font-weight:600;white-space:nowrap}\
td.num{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}\
td.wrap{overflow-wrap:anywhere;max-width:520px}\
td.nowrap{white-space:nowrap}\
.s-ok{color:#116329}.s-bad{color:#a40e26;font-weight:600}td.err{color:#a40e26}\
form.search{display:flex;gap:6px;margin:0 0 8px}\
form.search input[type=search]{flex:1;max-width:480px;padding:5px 8px;border:1px solid #d0d7de;border-radius:4px;font:inherit}\
form.search button{padding:5px 12px;border:1px solid #1f883d;border-radius:4px;background:#1f883d;color:#fff;font:inherit;cursor:pointer}\
form.search a{align-self:center;font-size:12px}\
.hint{font-size:12px;color:#57606a;margin:0 0 6px}\
";

fn render_header(out: &mut String, page: &StatusPage, title: &str, searching: bool) {
    let _ = write!(
        out,
        "<header>\n<h1>{}</h1>\n<span class=\"meta\">",
        esc(title)
    );
    if !page.generated_at.is_empty() {
        let _ = write!(out, "generated {}", esc(&page.generated_at));
        out.push_str(" &middot; ");
    }
    if searching {
        out.push_str("auto-refresh off while searching");
    } else {
        let _ = write!(out, "refreshes every {REFRESH_SECS} s");
    }
    out.push_str("</span>\n<span class=\"summary\">");
    for h in [
        Health::Failing,
        Health::Degraded,
        Health::Paused,
        Health::Ok,
    ] {
        let n = page.connectors.iter().filter(|c| c.health == h).count();
        if n > 0 {
            let _ = write!(
                out,
                "<span class=\"badge {}\">{} {}</span>",
                h.class(),
                n,
                h.label()
            );
        }
    }
    out.push_str("</span>\n</header>\n");
}

fn render_connector(out: &mut String, c: &ConnectorView) {
    let h = c.health;
    let _ = write!(
        out,
        "<article class=\"card {cls}\">\n<div class=\"card-head\"><div><h3>{name}</h3>\
         <span class=\"kind\">{kind}</span></div>\
         <span class=\"badge {cls}\" title=\"health\">{label}</span></div>\n",
        cls = h.class(),
        name = esc(&c.name),
        kind = esc(&c.kind),
        label = h.label(),
    );
    if c.paused || c.deprovisions_paused {
        let what = if c.paused {
            "All traffic paused"
        } else {
            "Deprovisions held (leaver safety)"
        };
        let _ = write!(out, "<p class=\"notice\"><b>{what}</b>");
        if let Some(reason) = c.reason.as_deref().filter(|r| !r.is_empty()) {
            let _ = write!(out, ": {}", esc(reason));
        }
        out.push_str("</p>\n");
    } else if let Some(reason) = c.reason.as_deref().filter(|r| !r.is_empty()) {
        let _ = writeln!(out, "<p class=\"notice\">{}</p>", esc(reason));
    }

    out.push_str("<div class=\"counts\">");
    for (label, n, bad) in [
        ("pending", c.pending, false),
        ("in flight", c.in_flight, false),
        ("done", c.done, false),
        ("dead", c.dead, c.dead > 0),
    ] {
        let _ = write!(
            out,
            "<div{}><b>{}</b><span>{}</span></div>",
            if bad { " class=\"bad\"" } else { "" },
            group_digits(n),
            label
        );
    }
    out.push_str("</div>\n<dl class=\"facts\">");
    let dash = "&mdash;";
    let _ = write!(
        out,
        "<dt>Oldest pending</dt><dd>{}</dd>",
        c.oldest_pending
            .as_deref()
            .map(esc)
            .as_deref()
            .unwrap_or(dash)
    );
    let _ = write!(
        out,
        "<dt>Last success</dt><dd>{}</dd>",
        c.last_success
            .as_deref()
            .map(esc)
            .as_deref()
            .unwrap_or(dash)
    );
    match c.last_error.as_deref().filter(|e| !e.is_empty()) {
        Some(e) => {
            let _ = write!(
                out,
                "<dt>Last error</dt><dd class=\"err\" title=\"{}\">{}</dd>",
                esc(e),
                esc(&truncate(e, 240))
            );
        }
        None => {
            let _ = write!(out, "<dt>Last error</dt><dd>{dash}</dd>");
        }
    }
    out.push_str("</dl>\n");
    out.push_str(&depth_chart(&c.depth_history));
    out.push_str("</article>\n");
}

fn render_failures(out: &mut String, failures: &[FailureView]) {
    out.push_str("<section aria-labelledby=\"h-failures\">\n");
    out.push_str("<h2 id=\"h-failures\">Recent failures</h2>\n");
    if failures.is_empty() {
        out.push_str("<p class=\"empty\">No recent failures.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<table>\n<thead><tr><th>When</th><th>Connector</th><th>Resource</th>\
         <th>Status</th><th>Error</th></tr></thead>\n<tbody>\n",
    );
    for f in failures {
        let _ = writeln!(
            out,
            "<tr><td class=\"nowrap\">{}</td><td>{}</td><td class=\"wrap\">{}</td>\
             <td class=\"num\">{}</td><td class=\"wrap err\" title=\"{}\">{}</td></tr>",
            esc(&f.at),
            esc(&f.connector),
            esc(&f.resource),
            status_cell(f.status),
            esc(&f.error),
            esc(&truncate(&f.error, 500)),
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn render_search(out: &mut String, query: &str, searching: bool, results: &[LogView]) {
    out.push_str("<section aria-labelledby=\"h-search\">\n");
    out.push_str("<h2 id=\"h-search\">Provisioning log</h2>\n");
    // No `action`: the form submits to this page's own URL, wherever it is mounted.
    let _ = writeln!(
        out,
        "<form class=\"search\" method=\"get\" role=\"search\">\
         <input type=\"search\" name=\"q\" value=\"{}\" \
         placeholder=\"userName, resource id, connector, error text…\" \
         aria-label=\"Search the provisioning log\">\
         <button type=\"submit\">Search</button>{}</form>",
        esc(query),
        if searching {
            "<a href=\"?\">clear</a>"
        } else {
            ""
        },
    );
    if !searching {
        out.push_str("</section>\n");
        return;
    }
    let n = results.len();
    let _ = writeln!(
        out,
        "<p class=\"hint\">{} {} for &ldquo;{}&rdquo;</p>",
        group_digits(n as u64),
        if n == 1 { "entry" } else { "entries" },
        esc(query.trim())
    );
    if results.is_empty() {
        out.push_str("<p class=\"empty\">No log entries match.</p>\n</section>\n");
        return;
    }
    out.push_str(
        "<table>\n<thead><tr><th>When</th><th>Dir</th><th>Actor</th><th>Operation</th>\
         <th>Resource</th><th>userName</th><th>Status</th><th>Outcome</th><th>Latency</th>\
         <th>Detail</th></tr></thead>\n<tbody>\n",
    );
    for r in results {
        let latency = r
            .latency_ms
            .map(|ms| format!("{} ms", group_digits(ms)))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "<tr><td class=\"nowrap\">{}</td><td>{}</td><td>{}</td><td>{}</td>\
             <td class=\"wrap\">{}</td><td class=\"wrap\">{}</td><td class=\"num\">{}</td>\
             <td class=\"{}\">{}</td><td class=\"num\">{}</td><td class=\"wrap\">{}</td></tr>",
            esc(&r.at),
            esc(&r.direction),
            esc(&r.actor),
            esc(&r.operation),
            esc(&r.resource),
            esc(r.user_name.as_deref().unwrap_or("")),
            status_cell(r.status),
            outcome_class(&r.outcome),
            esc(&r.outcome),
            latency,
            esc(&truncate(r.detail.as_deref().unwrap_or(""), 500)),
        );
    }
    out.push_str("</tbody>\n</table>\n</section>\n");
}

fn status_cell(status: Option<u16>) -> String {
    match status {
        None => "&mdash;".to_string(),
        Some(s) => {
            let class = if (200..300).contains(&s) {
                "s-ok"
            } else if s >= 400 {
                "s-bad"
            } else {
                ""
            };
            format!("<span class=\"{class}\">{s}</span>")
        }
    }
}

fn outcome_class(outcome: &str) -> &'static str {
    let o = outcome.trim().to_ascii_lowercase();
    match o.as_str() {
        "ok" | "success" | "succeeded" | "delivered" | "done" | "created" | "updated"
        | "deleted" | "noop" | "no-op" => "s-ok",
        "error" | "failed" | "failure" | "dead" | "rejected" | "refused" | "timeout" => "s-bad",
        _ => "",
    }
}

// ---- the depth chart ----

const CHART_W: f64 = 300.0;
const CHART_H: f64 = 64.0;
/// Room on the left for the axis labels, and a little on the other sides for the stroke.
const PLOT_LEFT: f64 = 30.0;
const PLOT_RIGHT: f64 = CHART_W - 2.0;
const PLOT_TOP: f64 = 4.0;
const PLOT_BOTTOM: f64 = CHART_H - 4.0;

/// At most [`CHART_POINTS`] `(x, y)` points in SVG user units, x non-decreasing, all inside
/// the plot area; plus the depth that the top edge stands for (the y scale runs from 0 at
/// the bottom to that, so an idle queue lies flat on the floor).
fn chart_points(history: &[(i64, u64)]) -> (Vec<(f64, f64)>, u64) {
    let mut samples = history.to_vec();
    samples.sort_by_key(|&(t, _)| t);
    // More samples than points: equal runs of samples, each drawn as its peak at its last
    // time (a spike between two points still shows).
    let samples: Vec<(i64, u64)> = if samples.len() > CHART_POINTS {
        let n = samples.len();
        (0..CHART_POINTS)
            .map(|i| {
                let run = &samples[i * n / CHART_POINTS..(i + 1) * n / CHART_POINTS];
                let peak = run.iter().map(|&(_, d)| d).max().unwrap_or(0);
                (run[run.len() - 1].0, peak)
            })
            .collect()
    } else {
        samples
    };
    let top = samples.iter().map(|&(_, d)| d).max().unwrap_or(0);
    let (Some(&(t0, _)), Some(&(t1, _))) = (samples.first(), samples.last()) else {
        return (Vec::new(), 0);
    };
    let span = t1.saturating_sub(t0) as f64;
    let points = samples
        .iter()
        .map(|&(t, d)| {
            let x = if span > 0.0 {
                PLOT_LEFT + (t.saturating_sub(t0) as f64 / span) * (PLOT_RIGHT - PLOT_LEFT)
            } else {
                PLOT_RIGHT
            };
            let y = if top > 0 {
                PLOT_BOTTOM - (d as f64 / top as f64) * (PLOT_BOTTOM - PLOT_TOP)
            } else {
                PLOT_BOTTOM
            };
            (x, y)
        })
        .collect();
    (points, top)
}

fn depth_chart(history: &[(i64, u64)]) -> String {
    let (points, top) = chart_points(history);
    let mut svg = String::with_capacity(2048);
    let _ = write!(
        svg,
        "<figure><svg viewBox=\"0 0 {CHART_W} {CHART_H}\" width=\"{CHART_W}\" height=\"{CHART_H}\" \
         xmlns=\"http://www.w3.org/2000/svg\" role=\"img\" aria-label=\"",
    );
    let caption = if points.is_empty() {
        svg.push_str("Queue depth: no data\">");
        let _ = write!(
            svg,
            "<rect x=\"{PLOT_LEFT}\" y=\"{PLOT_TOP}\" width=\"{w}\" height=\"{h}\" fill=\"#f6f8fa\" \
             stroke=\"#d0d7de\" stroke-dasharray=\"3 3\"/>\
             <text x=\"{cx:.1}\" y=\"{cy:.1}\" text-anchor=\"middle\" font-size=\"11\" \
             fill=\"#57606a\">no data yet</text></svg>",
            w = PLOT_RIGHT - PLOT_LEFT,
            h = PLOT_BOTTOM - PLOT_TOP,
            cx = (PLOT_LEFT + PLOT_RIGHT) / 2.0,
            cy = (PLOT_TOP + PLOT_BOTTOM) / 2.0 + 4.0,
        );
        "Queue depth, last hour: no samples".to_string()
    } else {
        let mut depths: Vec<u64> = history.iter().map(|&(_, d)| d).collect();
        depths.sort_unstable();
        let min = depths[0];
        let max = depths[depths.len() - 1];
        let now = history
            .iter()
            .max_by_key(|&&(t, _)| t)
            .map(|&(_, d)| d)
            .unwrap_or(0);
        let (t0, t1) = (
            history.iter().map(|&(t, _)| t).min().unwrap_or(0),
            history.iter().map(|&(t, _)| t).max().unwrap_or(0),
        );
        let _ = write!(
            svg,
            "Queue depth over {}: min {}, max {}, now {}\">",
            span_label(t1.saturating_sub(t0)),
            min,
            max,
            now
        );
        // Frame: the floor (0) and the ceiling (max), labelled.
        let _ = write!(
            svg,
            "<line x1=\"{PLOT_LEFT}\" y1=\"{PLOT_TOP}\" x2=\"{PLOT_RIGHT}\" y2=\"{PLOT_TOP}\" \
             stroke=\"#eaeef2\"/>\
             <line x1=\"{PLOT_LEFT}\" y1=\"{PLOT_BOTTOM}\" x2=\"{PLOT_RIGHT}\" y2=\"{PLOT_BOTTOM}\" \
             stroke=\"#d0d7de\"/>\
             <text x=\"{lx}\" y=\"{by}\" text-anchor=\"end\" font-size=\"10\" fill=\"#57606a\">0</text>",
            lx = PLOT_LEFT - 4.0,
            by = PLOT_BOTTOM,
        );
        // The ceiling's label; an idle queue has no ceiling to speak of.
        if top > 0 {
            let _ = write!(
                svg,
                "<text x=\"{lx}\" y=\"{ty}\" text-anchor=\"end\" font-size=\"10\" \
                 fill=\"#57606a\">{top}</text>",
                lx = PLOT_LEFT - 4.0,
                ty = PLOT_TOP + 8.0,
                top = compact(top),
            );
        }
        let line: Vec<String> = if points.len() == 1 {
            // One sample: a level line across the plot, so it is visible.
            let y = points[0].1;
            vec![
                format!("{PLOT_LEFT:.1},{y:.1}"),
                format!("{PLOT_RIGHT:.1},{y:.1}"),
            ]
        } else {
            points
                .iter()
                .map(|&(x, y)| format!("{x:.1},{y:.1}"))
                .collect()
        };
        let first_x = line[0].split(',').next().unwrap_or("0");
        let last_x = line[line.len() - 1].split(',').next().unwrap_or("0");
        let _ = write!(
            svg,
            "<polygon points=\"{first_x},{PLOT_BOTTOM:.1} {} {last_x},{PLOT_BOTTOM:.1}\" \
             fill=\"#0969da\" fill-opacity=\"0.15\" stroke=\"none\"/>\
             <polyline points=\"{}\" fill=\"none\" stroke=\"#0969da\" stroke-width=\"1.5\" \
             stroke-linejoin=\"round\" stroke-linecap=\"round\"/>",
            line.join(" "),
            line.join(" "),
        );
        let (lx, ly) = points[points.len() - 1];
        let _ = write!(
            svg,
            "<circle cx=\"{lx:.1}\" cy=\"{ly:.1}\" r=\"2.5\" fill=\"#0969da\"/></svg>"
        );
        format!(
            "Queue depth, {}: min {} &middot; max {} &middot; now {}",
            span_label(t1.saturating_sub(t0)),
            group_digits(min),
            group_digits(max),
            group_digits(now)
        )
    };
    let _ = writeln!(svg, "<figcaption>{caption}</figcaption></figure>");
    svg
}

/// "last 59 min" for the span the samples cover.
fn span_label(span_ms: i64) -> String {
    let span_ms = span_ms.max(0);
    let mins = span_ms.saturating_add(30_000) / 60_000;
    if mins >= 1 {
        format!("last {mins} min")
    } else {
        let secs = span_ms.saturating_add(500) / 1000;
        format!("last {secs} s")
    }
}

// ---- text helpers ----

/// HTML-escapes text for element content and quoted attribute values.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + s.len() / 8);
    for ch in s.chars() {
        match ch {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Controls other than tab/newline have no business on the page.
            c if c.is_control() && c != '\t' && c != '\n' => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// At most `max` characters, with an ellipsis when cut (never splits a character).
fn truncate(s: &str, max: usize) -> String {
    match s.char_indices().nth(max) {
        None => s.to_string(),
        Some((i, _)) => format!("{}…", &s[..i]),
    }
}

/// 1234567 → "1,234,567".
fn group_digits(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    // Digits still to come after this one, counted down: a comma before each group of 3.
    let mut left = digits.len();
    for ch in digits.chars() {
        if left < digits.len() && left / 3 * 3 == left {
            out.push(',');
        }
        out.push(ch);
        left -= 1;
    }
    out
}

/// A short axis label: 950, 12k, 3.4M.
fn compact(n: u64) -> String {
    match n {
        0..=9_999 => n.to_string(),
        10_000..=999_999 => format!("{}k", n / 1000),
        _ => format!("{:.1}M", n as f64 / 1_000_000.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const XSS: &str = "<script>alert('x')</script>";

    fn connector(name: &str) -> ConnectorView {
        ConnectorView {
            name: name.to_string(),
            kind: "webhook".to_string(),
            health: Health::Ok,
            pending: 0,
            done: 10,
            depth_history: (0..60)
                .map(|i| (1_700_000_000_000 + i * 60_000, 0))
                .collect(),
            ..ConnectorView::default()
        }
    }

    /// Every `points="…"` attribute's coordinate pairs in the document.
    fn all_points(html: &str) -> Vec<Vec<(f64, f64)>> {
        html.split("points=\"")
            .skip(1)
            .map(|rest| {
                rest[..rest.find('"').unwrap()]
                    .split_whitespace()
                    .map(|pair| {
                        let (x, y) = pair.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    fn polyline_points(html: &str) -> Vec<Vec<(f64, f64)>> {
        html.split("<polyline points=\"")
            .skip(1)
            .map(|rest| {
                rest[..rest.find('"').unwrap()]
                    .split_whitespace()
                    .map(|pair| {
                        let (x, y) = pair.split_once(',').unwrap();
                        (x.parse().unwrap(), y.parse().unwrap())
                    })
                    .collect()
            })
            .collect()
    }

    /// Crude well-formedness: each of these elements opens as often as it closes.
    fn assert_balanced(html: &str) {
        for tag in [
            "html",
            "head",
            "body",
            "header",
            "main",
            "section",
            "article",
            "div",
            "table",
            "thead",
            "tbody",
            "tr",
            "td",
            "th",
            "svg",
            "figure",
            "form",
            "p",
            "dl",
            "dd",
            "dt",
            "span",
            "h1",
            "h2",
            "h3",
            "title",
            "style",
            "figcaption",
            "text",
            "b",
        ] {
            let opens = html.matches(&format!("<{tag}>")).count()
                + html.matches(&format!("<{tag} ")).count();
            let closes = html.matches(&format!("</{tag}>")).count();
            assert_eq!(
                opens, closes,
                "<{tag}> opened {opens} times, closed {closes}"
            );
        }
    }

    #[test]
    fn escapes_every_interpolated_string() {
        let page = StatusPage {
            title: XSS.into(),
            generated_at: XSS.into(),
            connectors: vec![ConnectorView {
                name: XSS.into(),
                kind: XSS.into(),
                health: Health::Paused,
                paused: true,
                reason: Some(XSS.into()),
                oldest_pending: Some(XSS.into()),
                last_success: Some(XSS.into()),
                last_error: Some(XSS.into()),
                ..ConnectorView::default()
            }],
            failures: vec![FailureView {
                at: XSS.into(),
                connector: XSS.into(),
                resource: XSS.into(),
                status: Some(500),
                error: XSS.into(),
            }],
            query: Some(format!("\"><{XSS}")),
            results: vec![LogView {
                at: XSS.into(),
                direction: XSS.into(),
                actor: XSS.into(),
                operation: XSS.into(),
                resource: XSS.into(),
                user_name: Some(XSS.into()),
                status: Some(201),
                outcome: XSS.into(),
                latency_ms: Some(3),
                detail: Some(XSS.into()),
            }],
        };
        let html = render(&page);
        assert!(!html.contains("<script"), "{html}");
        assert!(!html.contains("alert('x')"));
        assert!(html.contains("&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;"));
        // The query cannot break out of the input's value attribute.
        assert!(
            html.contains("value=\"&quot;&gt;&lt;&lt;script&gt;"),
            "{html}"
        );
        assert_balanced(&html);
    }

    #[test]
    fn esc_handles_all_specials_and_controls() {
        assert_eq!(esc("a&b<c>d\"e'f"), "a&amp;b&lt;c&gt;d&quot;e&#39;f");
        assert_eq!(esc("x\u{0}y\u{1b}z\tq\nr"), "x\u{FFFD}y\u{FFFD}z\tq\nr");
        assert_eq!(esc("Zoë ✓"), "Zoë ✓");
    }

    #[test]
    fn chart_points_fill_the_plot_with_monotonic_x() {
        let history: Vec<(i64, u64)> = (0..60)
            .map(|i| (1_700_000_000_000 + i * 60_000, (i as u64 * 7) % 23))
            .rev() // any order in
            .collect();
        let (points, top) = chart_points(&history);
        assert_eq!(points.len(), 60);
        assert_eq!(top, 22);
        for w in points.windows(2) {
            assert!(w[0].0 < w[1].0, "x not increasing: {w:?}");
        }
        for &(x, y) in &points {
            assert!((PLOT_LEFT..=PLOT_RIGHT).contains(&x), "x {x}");
            assert!((PLOT_TOP..=PLOT_BOTTOM).contains(&y), "y {y}");
        }
        // Extremes reach the edges: first/last x, max at the top, 0 at the bottom.
        assert_eq!(points[0].0, PLOT_LEFT);
        assert_eq!(points[59].0, PLOT_RIGHT);
        assert!(points.iter().any(|&(_, y)| y == PLOT_TOP));
        assert!(points.iter().any(|&(_, y)| y == PLOT_BOTTOM));

        // And the same in the rendered SVG: every coordinate inside the viewBox.
        let html = depth_chart(&history);
        assert!(html.contains(&format!("viewBox=\"0 0 {CHART_W} {CHART_H}\"")));
        let lines = polyline_points(&html);
        assert_eq!(lines.len(), 1);
        assert_eq!(lines[0].len(), 60);
        for w in lines[0].windows(2) {
            assert!(w[0].0 <= w[1].0);
        }
        for pts in all_points(&html) {
            for (x, y) in pts {
                assert!((0.0..=CHART_W).contains(&x) && (0.0..=CHART_H).contains(&y));
            }
        }
        assert!(html.contains("min 0 &middot; max 22"), "{html}");
        assert!(html.contains(">22</text>"));
    }

    #[test]
    fn chart_scales_proportionally_from_zero() {
        let (points, top) = chart_points(&[(0, 0), (1000, 50), (2000, 100)]);
        assert_eq!(top, 100);
        let mid = (PLOT_TOP + PLOT_BOTTOM) / 2.0;
        assert!((points[1].1 - mid).abs() < 1e-9);
        assert!((points[1].0 - (PLOT_LEFT + PLOT_RIGHT) / 2.0).abs() < 1e-9);
    }

    #[test]
    fn chart_downsamples_to_sixty_points_keeping_peaks() {
        let mut history: Vec<(i64, u64)> = (0..3600).map(|s| (s * 1000, 1)).collect();
        history[1234].1 = 999; // a one-second spike
        let (points, top) = chart_points(&history);
        assert_eq!(points.len(), CHART_POINTS);
        assert_eq!(top, 999);
        assert!(points.iter().any(|&(_, y)| y == PLOT_TOP));
        for w in points.windows(2) {
            assert!(w[0].0 <= w[1].0);
        }
        assert!(depth_chart(&history).contains("max 999"));
    }

    #[test]
    fn chart_handles_empty_zero_single_and_same_time() {
        let empty = depth_chart(&[]);
        assert!(empty.contains("no data"));
        assert!(!empty.contains("polyline"));

        let zeros: Vec<(i64, u64)> = (0..60).map(|i| (i * 60_000, 0)).collect();
        let html = depth_chart(&zeros);
        assert!(!html.contains("NaN") && !html.contains("inf"));
        let line = &polyline_points(&html)[0];
        assert_eq!(line.len(), 60);
        assert!(line.iter().all(|&(_, y)| y == PLOT_BOTTOM), "{line:?}");
        assert!(html.contains("min 0 &middot; max 0 &middot; now 0"));
        assert_eq!(html.matches(">0</text>").count(), 1, "{html}");

        let one = depth_chart(&[(5, 7)]);
        let line = &polyline_points(&one)[0];
        assert_eq!(line.len(), 2);
        assert_eq!(line[0], (PLOT_LEFT, PLOT_TOP));
        assert_eq!(line[1], (PLOT_RIGHT, PLOT_TOP));

        let same_time = depth_chart(&[(5, 1), (5, 3)]);
        assert!(!same_time.contains("NaN"));
        for pts in all_points(&same_time) {
            for (x, y) in pts {
                assert!((0.0..=CHART_W).contains(&x) && (0.0..=CHART_H).contains(&y));
            }
        }

        let extreme = depth_chart(&[(i64::MIN, u64::MAX), (i64::MAX, 0)]);
        assert!(!extreme.contains("NaN") && !extreme.contains("inf"));
    }

    #[test]
    fn health_rule() {
        use Health::*;
        // pending, dead, oldest, error, paused
        assert_eq!(health(0, 0, None, false, false), Ok);
        assert_eq!(health(5, 0, Some(10), false, false), Ok);
        assert_eq!(health(0, 0, None, false, true), Paused);
        assert_eq!(health(100, 3, Some(99_999), true, true), Paused);
        assert_eq!(health(0, 1, None, false, false), Degraded);
        assert_eq!(health(0, 0, None, true, false), Degraded);
        assert_eq!(health(1, 0, Some(59), false, false), Ok);
        assert_eq!(health(1, 0, Some(60), false, false), Degraded);
        assert_eq!(health(1, 0, Some(5), true, false), Degraded);
        assert_eq!(health(1, 0, Some(119), true, false), Degraded);
        assert_eq!(health(1, 0, Some(120), true, false), Failing);
        assert_eq!(health(1, 0, Some(899), false, false), Degraded);
        assert_eq!(health(1, 0, Some(900), false, false), Failing);
        // Age only counts with something pending; clock skew is no age.
        assert_eq!(health(0, 0, Some(10_000), false, false), Ok);
        assert_eq!(health(0, 0, Some(10_000), true, false), Degraded);
        assert_eq!(health(3, 0, Some(-50), true, false), Degraded);
        assert_eq!(health(3, 0, None, true, false), Degraded);
    }

    #[test]
    fn empty_page() {
        let html = render(&StatusPage::default());
        assert!(html.starts_with("<!DOCTYPE html>"));
        assert!(html.contains("<title>scim-relay status</title>"));
        assert!(html.contains("<meta http-equiv=\"refresh\" content=\"30\">"));
        assert!(html.contains("No connectors configured."));
        assert!(html.contains("No recent failures."));
        assert!(html.contains("name=\"q\""));
        assert!(html.contains("method=\"get\""));
        assert!(!html.contains("<table"));
        // Offline: no scripts and nothing fetched from elsewhere.
        assert!(!html.contains("<script") && !html.contains("src=") && !html.contains("<link"));
        assert!(!html.contains("url(") && !html.contains("@import"));
        assert_balanced(&html);
    }

    #[test]
    fn two_connectors_and_a_failure() {
        let mut failing = connector("hr-events");
        failing.health = health(4, 1, Some(300), true, false);
        failing.pending = 4;
        failing.dead = 1;
        failing.done = 1_234_567;
        failing.oldest_pending = Some("5m".into());
        failing.last_error =
            Some("error sending request: tcp connect error: Connection refused".into());
        failing.depth_history = (0..60).map(|i| (i * 60_000, i as u64 / 10)).collect();
        let mut rooms = connector("andmoney-rooms");
        rooms.kind = "scim (andmoney-rooms)".into();
        rooms.deprovisions_paused = true;
        rooms.reason = Some("12 deprovisions in the last hour exceed 10% of 40".into());
        rooms.last_success = Some("12s ago".into());
        rooms.health = Health::Degraded;
        let page = StatusPage {
            title: "scim-relay on idp-gw-1".into(),
            generated_at: "2026-11-23 12:00:00Z".into(),
            connectors: vec![failing, rooms],
            failures: vec![FailureView {
                at: "2026-11-23 11:59:58Z".into(),
                connector: "hr-events".into(),
                resource: "User/2819c223-7f76-453a-919d-413861904646".into(),
                status: None,
                error: "cannot connect: Connection refused (os error 111)".into(),
            }],
            query: None,
            results: vec![],
        };
        let html = render(&page);
        assert!(html.contains("<h3>hr-events</h3>"));
        assert!(html.contains("<h3>andmoney-rooms</h3>"));
        assert!(html.contains("cannot connect: Connection refused (os error 111)"));
        assert!(html.contains("User/2819c223-7f76-453a-919d-413861904646"));
        assert!(html.contains("badge failing\" title=\"health\">Failing"));
        assert!(html.contains("badge degraded\" title=\"health\">Degraded"));
        assert!(html.contains("1 Failing</span>") && html.contains("1 Degraded</span>"));
        assert!(html.contains("Deprovisions held (leaver safety)"));
        assert!(html.contains("1,234,567"));
        assert!(html.contains("<dd>5m</dd>"));
        assert!(html.contains("Connection refused"));
        assert_eq!(html.matches("<polyline").count(), 2);
        assert!(html.contains("<meta http-equiv=\"refresh\""));
        assert!(html.contains("Recent failures"));
        assert_balanced(&html);
    }

    #[test]
    fn search_shows_results_and_stops_refresh() {
        let page = StatusPage {
            query: Some("ann.lee".into()),
            results: vec![
                LogView {
                    at: "12:00:01".into(),
                    direction: "in".into(),
                    actor: "entra".into(),
                    operation: "POST /Users".into(),
                    resource: "User/abc".into(),
                    user_name: Some("ann.lee@example.com".into()),
                    status: Some(201),
                    outcome: "ok".into(),
                    latency_ms: Some(4),
                    detail: None,
                },
                LogView {
                    at: "12:00:02".into(),
                    direction: "out".into(),
                    actor: "hr-events".into(),
                    operation: "user.created".into(),
                    resource: "User/abc".into(),
                    user_name: Some("ann.lee@example.com".into()),
                    status: Some(503),
                    outcome: "error".into(),
                    latency_ms: Some(1500),
                    detail: Some("Service Unavailable".into()),
                },
            ],
            ..StatusPage::default()
        };
        let html = render(&page);
        assert!(!html.contains("http-equiv=\"refresh\""));
        assert!(html.contains("value=\"ann.lee\""));
        assert!(html.contains("2 entries for &ldquo;ann.lee&rdquo;"));
        assert!(html.contains("ann.lee@example.com"));
        assert!(html.contains("1,500 ms"));
        assert!(html.contains("<td class=\"s-bad\">error</td>"));
        assert!(html.contains("<td class=\"s-ok\">ok</td>"));
        assert!(html.contains("auto-refresh off"));
        assert_balanced(&html);

        let none = render(&StatusPage {
            query: Some("nobody".into()),
            ..StatusPage::default()
        });
        assert!(none.contains("No log entries match."));
        assert!(!none.contains("http-equiv=\"refresh\""));

        // A blank query is no search: refresh stays on, no results section.
        let blank = render(&StatusPage {
            query: Some("  ".into()),
            ..StatusPage::default()
        });
        assert!(blank.contains("http-equiv=\"refresh\""));
        assert!(!blank.contains("entries for"));
    }

    #[test]
    fn text_helpers() {
        assert_eq!(group_digits(0), "0");
        assert_eq!(group_digits(999), "999");
        assert_eq!(group_digits(1000), "1,000");
        assert_eq!(group_digits(u64::MAX), "18,446,744,073,709,551,615");
        assert_eq!(truncate("héllo", 3), "hél…");
        assert_eq!(truncate("abc", 3), "abc");
        assert_eq!(compact(9_999), "9999");
        assert_eq!(compact(12_345), "12k");
        assert_eq!(compact(3_400_000), "3.4M");
        assert_eq!(span_label(59 * 60_000 + 10), "last 59 min");
        assert_eq!(span_label(20_000), "last 20 s");
        assert_eq!(Health::Failing.label(), "Failing");
    }
}
