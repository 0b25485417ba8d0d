//! Drawing the monitor with ratatui: a title line, the board table, the selected board's
//! detail (stages, latency sparkline, detections, health) and the event log.

use ratatui::layout::{Constraint, Layout, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::Line;
use ratatui::widgets::{Block, Borders, Cell, Paragraph, Row, Sparkline, Table};
use ratatui::Frame as TuiFrame;

use super::{quantile_ms as ms, BoardView, Monitor, LOG_LINES};
use crate::report::STAGES;

impl Monitor {
    pub fn draw(&self, f: &mut TuiFrame) {
        let [title, table, detail, log] = Layout::vertical([
            Constraint::Length(1),
            Constraint::Length(self.boards.len() as u16 + 3),
            Constraint::Min(10),
            Constraint::Length(LOG_LINES as u16 + 2),
        ])
        .areas(f.area());
        f.render_widget(
            Paragraph::new(format!(
                "svit-host: {} board(s)   j/k board  +/- thr  d dense  [/] ratio  t thr  </> budget  n no budget  p/r pause  s snap  q quit",
                self.boards.len()
            ))
            .style(Style::default().add_modifier(Modifier::BOLD)),
            title,
        );
        self.draw_table(f, table);
        if let Some(b) = self.boards.get(self.selected) {
            draw_detail(f, detail, b);
        }
        let lines: Vec<Line> = self.log.iter().map(|l| Line::from(l.as_str())).collect();
        f.render_widget(
            Paragraph::new(lines).block(Block::default().borders(Borders::ALL).title("events")),
            log,
        );
    }

    fn draw_table(&self, f: &mut TuiFrame, area: Rect) {
        let header = Row::new([
            "board", "state", "fps", "p50 ms", "p95 ms", "p99 ms", "kept", "thr", "budget",
            "dropped", "missing", "temp", "throttle",
        ])
        .style(Style::default().add_modifier(Modifier::BOLD));
        let rows = self.boards.iter().enumerate().map(|(i, b)| {
            let state = match (b.connected, b.paused) {
                (false, _) => "gone",
                (true, true) => "paused",
                _ => "live",
            };
            let temp = b
                .health
                .as_ref()
                .and_then(|h| h.cpu_temp_c)
                .map_or("-".into(), |t| format!("{t:.0}C"));
            let throttle = b
                .health
                .as_ref()
                .and_then(|h| h.throttled)
                .map_or("-".into(), |t| format!("{t:#x}"));
            let row = Row::new([
                Cell::from(b.hello.device.clone()),
                Cell::from(state),
                Cell::from(format!("{:.1}", b.fps())),
                Cell::from(format!("{:.1}", ms(&b.total, 0.5))),
                Cell::from(format!("{:.1}", ms(&b.total, 0.95))),
                Cell::from(format!("{:.1}", ms(&b.total, 0.99))),
                Cell::from(format!("{:.2}", b.kept_now())),
                Cell::from(if b.threshold.is_finite() {
                    format!("{:.1}", b.threshold)
                } else {
                    "-".into()
                }),
                Cell::from(b.budget_ms.map_or("-".into(), |ms| {
                    format!("{ms:.0}ms {:.0}%", 100.0 * b.budget_hit_rate())
                })),
                Cell::from(b.dropped_on_board.to_string()),
                Cell::from(b.missing.to_string()),
                Cell::from(temp),
                Cell::from(throttle),
            ]);
            if i == self.selected {
                row.style(Style::default().bg(Color::DarkGray))
            } else {
                row
            }
        });
        let widths = [
            Constraint::Length(18),
            Constraint::Length(6),
            Constraint::Length(6),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(7),
            Constraint::Length(5),
            Constraint::Length(4),
            Constraint::Length(10),
            Constraint::Length(8),
            Constraint::Length(8),
            Constraint::Length(5),
            Constraint::Length(8),
        ];
        f.render_widget(
            Table::new(rows, widths)
                .header(header)
                .block(Block::default().borders(Borders::ALL).title("boards")),
            area,
        );
    }
}

fn draw_detail(f: &mut TuiFrame, area: Rect, b: &BoardView) {
    let [left, right] =
        Layout::horizontal([Constraint::Percentage(55), Constraint::Percentage(45)]).areas(area);
    let [stages, dets] = Layout::vertical([
        Constraint::Length(STAGES.len() as u16 + 3),
        Constraint::Min(3),
    ])
    .areas(left);
    let rows = STAGES.iter().zip(&b.stages).map(|(name, h)| {
        Row::new([
            name.to_string(),
            format!("{:.2}", ms(h, 0.5)),
            format!("{:.2}", ms(h, 0.95)),
            format!("{:.2}", ms(h, 0.99)),
            format!("{:.2}", if h.is_empty() { 0.0 } else { h.mean() / 1000.0 }),
        ])
    });
    f.render_widget(
        Table::new(
            rows,
            [
                Constraint::Length(15),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(8),
                Constraint::Length(8),
            ],
        )
        .header(
            Row::new(["stage", "p50 ms", "p95 ms", "p99 ms", "mean"])
                .style(Style::default().add_modifier(Modifier::BOLD)),
        )
        .block(Block::default().borders(Borders::ALL).title(format!(
            "{}: latency per stage (all frames), bundle {} {}{}",
            b.hello.device,
            b.hello.model.bundle,
            b.hello.model.hash,
            b.hello
                .model
                .signed_by
                .as_ref()
                .map_or(String::new(), |k| format!(", signed by {k}"))
        ))),
        stages,
    );
    let det_lines: Vec<Line> = if b.last_detections.is_empty() {
        vec![Line::from("no detections in the last frame")]
    } else {
        b.last_detections
            .iter()
            .map(|(l, s)| Line::from(format!("{l:<10} {s:.2}")))
            .collect()
    };
    f.render_widget(
        Paragraph::new(det_lines).block(
            Block::default()
                .borders(Borders::ALL)
                .title("latest detections"),
        ),
        dets,
    );
    let [lat, kept] =
        Layout::vertical([Constraint::Percentage(50), Constraint::Percentage(50)]).areas(right);
    let recent: Vec<u64> = b.total_recent.iter().copied().collect();
    f.render_widget(
        Sparkline::default()
            .data(&recent)
            .block(Block::default().borders(Borders::ALL).title(format!(
                "latency, last {} frames (max {:.1} ms)",
                recent.len(),
                recent.iter().max().copied().unwrap_or(0) as f64 / 1000.0
            ))),
        lat,
    );
    let kept_recent: Vec<u64> = b.kept_recent.iter().copied().collect();
    f.render_widget(
        Sparkline::default().data(&kept_recent).max(100).block(
            Block::default()
                .borders(Borders::ALL)
                .title(format!("kept tokens, now {:.0}%", b.kept_now() * 100.0)),
        ),
        kept,
    );
}
