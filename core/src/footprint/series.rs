//! Grid intensity over time, read from a CSV, and a query's energy split across it.

use super::FootprintError;
use std::path::Path;

/// Intensity over time: each row holds from its time until the next row's (the last row for
/// as long as the step before it, or for ever when it is the only one).
#[derive(Debug, Clone, PartialEq)]
pub struct Series {
    /// Row start times, Unix seconds, increasing.
    times: Vec<f64>,
    /// Grams CO2e per kWh from each row's time.
    carbon: Vec<f64>,
    /// Litres of water per kWh from each row's time, when the file has that column.
    water: Option<Vec<f64>>,
}

/// A window's share of each intensity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split {
    /// Grams CO2e per kWh, averaged over the window (energy spread evenly across it).
    pub carbon: f64,
    /// Litres per kWh likewise, when the series has water.
    pub water: Option<f64>,
}

impl Series {
    /// Reads a CSV with a `time` column (Unix seconds or RFC 3339), a `g_co2e_per_kwh`
    /// column and optionally `water_l_per_kwh`; errors name the file and line.
    pub fn read(path: &Path) -> Result<Self, FootprintError> {
        let bad = |line: usize, message: String| FootprintError::Series {
            path: path.to_path_buf(),
            line,
            message,
        };
        let mut reader = csv::Reader::from_path(path).map_err(|e| bad(0, e.to_string()))?;
        let headers = reader.headers().map_err(|e| bad(1, e.to_string()))?.clone();
        let column = |name: &str| headers.iter().position(|h| h.trim() == name);
        let time = column("time").ok_or_else(|| bad(1, "no `time` column".into()))?;
        let carbon =
            column("g_co2e_per_kwh").ok_or_else(|| bad(1, "no `g_co2e_per_kwh` column".into()))?;
        let water = column("water_l_per_kwh");
        let mut series = Series {
            times: Vec::new(),
            carbon: Vec::new(),
            water: water.map(|_| Vec::new()),
        };
        for (i, row) in reader.records().enumerate() {
            let line = i + 2;
            let row = row.map_err(|e| bad(line, e.to_string()))?;
            let field = |k: usize| row.get(k).unwrap_or("").trim();
            let t = parse_time(field(time)).map_err(|m| bad(line, format!("time: {m}")))?;
            if series.times.last().is_some_and(|&last| t <= last) {
                return Err(bad(line, "times must increase from row to row".into()));
            }
            let value = |k: usize, name: &str| -> Result<f64, FootprintError> {
                match field(k).parse::<f64>() {
                    Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                    _ => Err(bad(
                        line,
                        format!("{name}: `{}` is not a number >= 0", field(k)),
                    )),
                }
            };
            series.times.push(t);
            series.carbon.push(value(carbon, "g_co2e_per_kwh")?);
            if let (Some(k), Some(w)) = (water, series.water.as_mut()) {
                w.push(value(k, "water_l_per_kwh")?);
            }
        }
        if series.times.is_empty() {
            return Err(bad(1, "no rows".into()));
        }
        Ok(series)
    }

    /// A series from rows of (Unix time, g/kWh, L/kWh), for tests and callers with their own
    /// source.
    pub fn from_rows(rows: &[(f64, f64, Option<f64>)]) -> Self {
        Series {
            times: rows.iter().map(|r| r.0).collect(),
            carbon: rows.iter().map(|r| r.1).collect(),
            water: rows.iter().map(|r| r.2).collect(),
        }
    }

    /// Whether the file gave water intensity.
    pub fn has_water(&self) -> bool {
        self.water.is_some()
    }

    /// The first and last instants the series covers.
    pub fn span(&self) -> (f64, f64) {
        let n = self.times.len();
        let last = self.times[n - 1];
        let end = if n > 1 {
            last + (last - self.times[n - 2])
        } else {
            f64::INFINITY
        };
        (self.times[0], end)
    }

    /// The intensities over `[start, end]` (Unix seconds), each row weighted by the share of
    /// the window it covers; `None` when the window is not inside the series.
    pub fn over(&self, start: f64, end: f64) -> Option<Split> {
        let (first, last) = self.span();
        if start < first || end > last || end < start {
            return None;
        }
        // The row holding `start`.
        let from = self.times.partition_point(|&t| t <= start) - 1;
        if end == start {
            return Some(Split {
                carbon: self.carbon[from],
                water: self.water.as_ref().map(|w| w[from]),
            });
        }
        let (mut carbon, mut water) = (0.0, 0.0);
        let mut i = from;
        loop {
            let row_end = self.times.get(i + 1).copied().unwrap_or(last);
            let lo = start.max(self.times[i]);
            let hi = end.min(row_end);
            if hi > lo {
                let share = (hi - lo) / (end - start);
                carbon += share * self.carbon[i];
                if let Some(w) = &self.water {
                    water += share * w[i];
                }
            }
            if row_end >= end || i + 1 >= self.times.len() {
                break;
            }
            i += 1;
        }
        Some(Split {
            carbon,
            water: self.water.as_ref().map(|_| water),
        })
    }
}

/// Unix seconds from a number or an RFC 3339 timestamp.
fn parse_time(s: &str) -> Result<f64, String> {
    if let Ok(v) = s.parse::<f64>() {
        return if v.is_finite() {
            Ok(v)
        } else {
            Err(format!("`{s}` is not a time"))
        };
    }
    chrono::DateTime::parse_from_rfc3339(s)
        .map(|t| t.timestamp() as f64 + f64::from(t.timestamp_subsec_nanos()) * 1e-9)
        .map_err(|e| format!("`{s}` is neither Unix seconds nor RFC 3339 ({e})"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_crossing_a_row_edge_takes_each_row_for_its_share_of_the_window() {
        // 100 g/kWh until t = 10, then 400 g/kWh until 20 (the last row lasts one step).
        let s = Series::from_rows(&[(0.0, 100.0, Some(1.0)), (10.0, 400.0, Some(3.0))]);
        // 8..12: half in each row.
        let split = s.over(8.0, 12.0).unwrap();
        assert!((split.carbon - 250.0).abs() < 1e-12, "{split:?}");
        assert!((split.water.unwrap() - 2.0).abs() < 1e-12);
        // 9..13: a quarter in the first row, three quarters in the second.
        let split = s.over(9.0, 13.0).unwrap();
        assert!((split.carbon - 325.0).abs() < 1e-12, "{split:?}");
        // Inside one row, and on an edge.
        assert_eq!(s.over(2.0, 3.0).unwrap().carbon, 100.0);
        assert_eq!(s.over(10.0, 10.0).unwrap().carbon, 400.0);
        assert_eq!(s.over(10.0, 20.0).unwrap().carbon, 400.0);
        // Outside the series: no answer rather than a guess.
        assert_eq!(s.over(-1.0, 2.0), None);
        assert_eq!(s.over(15.0, 21.0), None);
    }

    #[test]
    fn a_window_over_three_rows_weights_the_middle_one_by_its_whole_length() {
        let s = Series::from_rows(&[(0.0, 0.0, None), (1.0, 10.0, None), (2.0, 20.0, None)]);
        // 0.5..2.5: 0.5 s at 0, 1 s at 10, 0.5 s at 20 over 2 s.
        let split = s.over(0.5, 2.5).unwrap();
        assert!((split.carbon - 10.0).abs() < 1e-12, "{split:?}");
        assert_eq!(split.water, None);
    }

    #[test]
    fn rfc3339_and_unix_times_read_alike() {
        assert_eq!(parse_time("1700000000").unwrap(), 1_700_000_000.0);
        assert_eq!(parse_time("2023-11-14T22:13:20Z").unwrap(), 1_700_000_000.0);
        assert!(parse_time("yesterday").is_err());
    }
}
