//! The durable outbox and delivery log of `chg notify`, under `.git/chg/notify/` (never
//! committed):
//!
//! - `state.json`: the commit the last run read the history up to (the cursor);
//! - `outbox.json`: deliveries queued and not yet acknowledged, with their attempts, last
//!   error and next attempt; replaced whole (written, fsynced, renamed, folder fsynced);
//! - `delivered.jsonl`: one line per acknowledged delivery, appended and fsynced before the
//!   run goes on. It is the authority: a queued delivery it lists is never sent again. A
//!   line cut short by a crash is ignored (its delivery is then sent again, with the same
//!   event id for the receiver to drop).
//! - `lock`: held by the run that sends.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};

use super::{ChannelKind, Event, Failure, Message};
use crate::error::{Error, Result};
use crate::store::Store;

/// The notify folder of `store`: one per store, so that two stores in one repository keep
/// their own.
pub fn dir(store: &Store) -> PathBuf {
    let base = store.repo().path().join("chg").join("notify");
    let prefix = store.prefix().trim_end_matches('/');
    if prefix.is_empty() {
        base
    } else {
        base.join(&crate::text::sha256_hex(prefix.as_bytes())[..16])
    }
}

/// One queued delivery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Delivery {
    /// `event|channel|recipient`.
    pub key: String,
    /// The event.
    pub event: Event,
    /// The channel's name.
    pub channel: String,
    /// Its kind when queued.
    pub kind: String,
    /// The recipient (email), empty otherwise.
    #[serde(default)]
    pub to: String,
    /// Attempts that failed.
    #[serde(default)]
    pub attempts: u32,
    /// The earliest time of the next attempt.
    pub next_attempt: Timestamp,
    /// Why the last attempt failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Deliveries sent as one message: one event for chat and webhooks, a digest of every due
/// event for one person on an email channel.
#[derive(Debug, Clone)]
pub struct Batch {
    deliveries: Vec<Delivery>,
}

impl Batch {
    /// What is sent, for the report.
    pub fn message(&self) -> Message {
        let d = &self.deliveries[0];
        Message {
            channel: d.channel.clone(),
            kind: d.kind.clone(),
            to: d.to.clone(),
            events: self.deliveries.iter().map(|d| d.event.id.clone()).collect(),
        }
    }

    /// The events it carries.
    pub fn events(&self) -> Vec<Event> {
        self.deliveries.iter().map(|d| d.event.clone()).collect()
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct State {
    #[serde(default)]
    cursor: Option<String>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct OutboxFile {
    version: u32,
    deliveries: Vec<Delivery>,
}

#[derive(Debug, Serialize, Deserialize)]
struct Logged {
    key: String,
    event: String,
    channel: String,
    #[serde(default)]
    to: String,
    commit: String,
    at: Timestamp,
    /// Why the delivery was given up instead of delivered (its channel left the policy).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    discarded: Option<String>,
}

/// A run posts at most this many chat messages to one channel one by one; more become digests.
pub const CHAT_SINGLE: usize = 5;
/// Events in one chat digest (Slack allows 50 blocks a message).
pub const CHAT_DIGEST: usize = 20;

/// The outbox, the log and the cursor, read at the start of a run.
#[derive(Debug)]
pub struct Book {
    dir: PathBuf,
    cursor: Option<String>,
    outbox: Vec<Delivery>,
    delivered: HashSet<String>,
}

fn read_json<T: for<'de> Deserialize<'de> + Default>(path: &Path) -> Result<T> {
    match fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| {
            Error::Internal(format!(
                "{} does not parse ({e}); chg writes it whole or not at all, so it was changed by hand",
                path.display()
            ))
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(T::default()),
        Err(e) => Err(Error::io(format!("cannot read {}", path.display()), e)),
    }
}

/// Writes `bytes` to `path` whole: a temporary file, fsynced, renamed over it, and the folder
/// fsynced so the rename survives a power cut.
fn write_durably(path: &Path, bytes: &[u8]) -> Result<()> {
    crate::git::atomic_write(path, bytes)?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent()
        && let Ok(d) = fs::File::open(dir)
    {
        d.sync_all()
            .map_err(|e| Error::io(format!("cannot sync {}", dir.display()), e))?;
    }
    Ok(())
}

/// The pause before the next attempt after `attempts` failures: the next run at once after
/// the first, then 1, 2, 4 … minutes, at most an hour.
pub fn backoff(attempts: u32) -> SignedDuration {
    if attempts <= 1 {
        return SignedDuration::ZERO;
    }
    let minutes = 1i64 << (attempts - 2).min(6);
    SignedDuration::from_mins(minutes.min(60))
}

impl Book {
    /// Reads the folder `dir` (nothing there: a first run).
    pub fn open(dir: &Path) -> Result<Book> {
        fs::create_dir_all(dir)
            .map_err(|e| Error::io(format!("cannot create {}", dir.display()), e))?;
        let state: State = read_json(&dir.join("state.json"))?;
        let outbox: OutboxFile = read_json(&dir.join("outbox.json"))?;
        let mut delivered = HashSet::new();
        match fs::read_to_string(dir.join("delivered.jsonl")) {
            Ok(text) => {
                for line in text.lines() {
                    // A line cut short by a crash does not parse, and counts for nothing.
                    if let Ok(l) = serde_json::from_str::<Logged>(line) {
                        delivered.insert(l.key);
                    }
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(Error::io("cannot read the delivery log", e)),
        }
        let mut queued = outbox.deliveries;
        queued.retain(|d| !delivered.contains(&d.key));
        Ok(Book {
            dir: dir.to_owned(),
            cursor: state.cursor,
            outbox: queued,
            delivered,
        })
    }

    /// The commit the last run read up to.
    pub fn cursor(&self) -> Option<&str> {
        self.cursor.as_deref()
    }

    /// Whether the event's delivery to `channel` and `to` was delivered or is queued.
    pub fn known(&self, key: &str) -> bool {
        self.delivered.contains(key) || self.outbox.iter().any(|d| d.key == key)
    }

    /// Queues a delivery unless it is known; whether it was new.
    pub fn queue(
        &mut self,
        event: &Event,
        channel: &str,
        kind: ChannelKind,
        to: &str,
        now: Timestamp,
    ) -> bool {
        let key = format!("{}|{channel}|{to}", event.id);
        if self.known(&key) {
            return false;
        }
        self.outbox.push(Delivery {
            key,
            event: event.clone(),
            channel: channel.to_owned(),
            kind: kind.as_str().to_owned(),
            to: to.to_owned(),
            attempts: 0,
            next_attempt: now,
            last_error: None,
        });
        true
    }

    fn batches(&self, keep: impl Fn(&Delivery) -> bool) -> Vec<Batch> {
        let mut digests: BTreeMap<(String, String), Batch> = BTreeMap::new();
        let mut chats: BTreeMap<String, Vec<Delivery>> = BTreeMap::new();
        let mut out = Vec::new();
        for d in self.outbox.iter().filter(|d| keep(d)) {
            if d.kind == ChannelKind::Email.as_str() {
                digests
                    .entry((d.channel.clone(), d.to.clone()))
                    .or_insert_with(|| Batch {
                        deliveries: Vec::new(),
                    })
                    .deliveries
                    .push(d.clone());
            } else if d.kind == ChannelKind::Webhook.as_str() {
                // One request per event: receivers de-duplicate and verify event by event.
                out.push(Batch {
                    deliveries: vec![d.clone()],
                });
            } else {
                chats.entry(d.channel.clone()).or_default().push(d.clone());
            }
        }
        // Chat: one message per event, unless a run has more than a few for one channel
        // (a first run, a receiver back after a day down): then digests, never a flood.
        for list in chats.into_values() {
            if list.len() <= CHAT_SINGLE {
                out.extend(list.into_iter().map(|d| Batch {
                    deliveries: vec![d],
                }));
            } else {
                out.extend(list.chunks(CHAT_DIGEST).map(|c| Batch {
                    deliveries: c.to_vec(),
                }));
            }
        }
        out.extend(digests.into_values());
        out
    }

    /// The messages due at `now` (every queued one with `all`).
    pub fn due(&self, now: Timestamp, all: bool) -> Vec<Batch> {
        // Never tried: due whatever the clock of the run that queued it said.
        self.batches(|d| all || d.attempts == 0 || d.next_attempt <= now)
    }

    /// The messages whose next attempt, after a failure, is after `now`.
    pub fn waiting(&self, now: Timestamp) -> Vec<Failure> {
        self.batches(|d| d.attempts > 0 && d.next_attempt > now)
            .into_iter()
            .map(|b| {
                let d = &b.deliveries[0];
                Failure {
                    message: b.message(),
                    error: d.last_error.clone().unwrap_or_default(),
                    attempts: d.attempts,
                    next_attempt: d.next_attempt,
                }
            })
            .collect()
    }

    /// Records `batch` as delivered: appended to the log and fsynced before returning.
    pub fn delivered(&mut self, batch: &Batch, now: Timestamp) -> Result<()> {
        self.record(batch, now, None)
    }

    /// Records `batch` as given up, with why: logged like a delivery (never attempted again).
    pub fn discarded(&mut self, batch: &Batch, now: Timestamp, why: &str) -> Result<()> {
        self.record(batch, now, Some(why))
    }

    fn record(&mut self, batch: &Batch, now: Timestamp, discarded: Option<&str>) -> Result<()> {
        let path = self.dir.join("delivered.jsonl");
        let mut text = String::new();
        for d in &batch.deliveries {
            let line = Logged {
                key: d.key.clone(),
                event: d.event.id.clone(),
                channel: d.channel.clone(),
                to: d.to.clone(),
                commit: d.event.commit.clone(),
                at: now,
                discarded: discarded.map(str::to_owned),
            };
            text.push_str(
                &serde_json::to_string(&line).map_err(|e| Error::Internal(e.to_string()))?,
            );
            text.push('\n');
        }
        let mut f = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
        // A line cut short by an earlier crash would swallow this one: start on a new line.
        let len = f.metadata().map(|m| m.len()).unwrap_or(0);
        if len > 0 && !ends_with_newline(&path) {
            text.insert(0, '\n');
        }
        f.write_all(text.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::io(format!("cannot write {}", path.display()), e))?;
        if len == 0 {
            sync_dir(&path)?;
        }
        for d in &batch.deliveries {
            self.delivered.insert(d.key.clone());
        }
        self.outbox.retain(|d| !self.delivered.contains(&d.key));
        Ok(())
    }

    /// Records a failed attempt of `batch`; the attempts so far and the next attempt.
    pub fn failed(&mut self, batch: &Batch, now: Timestamp, why: &str) -> (u32, Timestamp) {
        let keys: HashSet<&str> = batch.deliveries.iter().map(|d| d.key.as_str()).collect();
        let mut result = (0, now);
        for d in self
            .outbox
            .iter_mut()
            .filter(|d| keys.contains(d.key.as_str()))
        {
            d.attempts += 1;
            d.next_attempt = now.checked_add(backoff(d.attempts)).unwrap_or(now);
            d.last_error = Some(why.to_owned());
            result = (d.attempts, d.next_attempt);
        }
        result
    }

    /// Writes the outbox whole.
    pub fn save_outbox(&self) -> Result<()> {
        let file = OutboxFile {
            version: 1,
            deliveries: self.outbox.clone(),
        };
        let bytes = serde_json::to_vec_pretty(&file).map_err(|e| Error::Internal(e.to_string()))?;
        write_durably(&self.dir.join("outbox.json"), &bytes)
    }

    /// Records that the history was read up to `head`.
    pub fn save_cursor(&mut self, head: &str) -> Result<()> {
        let state = State {
            cursor: Some(head.to_owned()),
        };
        let bytes = serde_json::to_vec(&state).map_err(|e| Error::Internal(e.to_string()))?;
        write_durably(&self.dir.join("state.json"), &bytes)?;
        self.cursor = Some(head.to_owned());
        Ok(())
    }
}

fn ends_with_newline(path: &Path) -> bool {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut f) = fs::File::open(path) else {
        return true;
    };
    let mut b = [0u8; 1];
    f.seek(SeekFrom::End(-1)).is_ok() && f.read_exact(&mut b).is_ok() && b[0] == b'\n'
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_retries_at_once_then_doubles_up_to_an_hour() {
        assert_eq!(backoff(1), SignedDuration::ZERO);
        assert_eq!(backoff(2), SignedDuration::from_mins(1));
        assert_eq!(backoff(3), SignedDuration::from_mins(2));
        assert_eq!(backoff(20), SignedDuration::from_mins(60));
    }
}
