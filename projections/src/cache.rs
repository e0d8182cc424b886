//! An in-memory copy of read-model rows that their projector keeps honest.
//!
//! The query side may serve a read model from memory only if it can never serve a value
//! older than what a waiting reader was promised. The rules:
//!
//! - the projector drops changed keys after its batch commits and before its progress is
//!   published (`Projector::committed`), so read-your-writes holds in this process;
//! - it also notifies a channel inside the batch's transaction, and the runtime's listener
//!   drops those keys in every other process before relaying that batch's checkpoint;
//! - a load that started before an invalidation of its shard does not store its result, so
//!   a row read just before a commit cannot outlive the invalidation that followed it;
//! - while the listener does not follow the channel (before it first connects, after it lost
//!   its connection) the cache neither serves nor keeps anything, and starts over empty once
//!   it follows again: notices sent meanwhile are lost.
//!
//! Memory is bounded: beyond `capacity` entries an arbitrary one makes room.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use crate::runtime::Subscription;

const SHARDS: usize = 32;

pub struct InvalidatingCache<K, V> {
    shards: Vec<RwLock<Shard<K, V>>>,
    capacity_per_shard: usize,
    /// Names this process in the notices it sends, so that its own listener skips them: the
    /// writer here already updated or dropped those keys, and dropping a key it just wrote
    /// through would only force a reload.
    origin: String,
    /// Set while notices may be missed: every read goes to the table, nothing is kept.
    standing_aside: AtomicBool,
}

struct Shard<K, V> {
    entries: HashMap<K, V>,
    generation: u64,
}

impl<K: Hash + Eq + Clone, V: Clone> InvalidatingCache<K, V> {
    pub fn new(capacity: usize) -> Self {
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    RwLock::new(Shard {
                        entries: HashMap::new(),
                        generation: 0,
                    })
                })
                .collect(),
            capacity_per_shard: capacity.div_ceil(SHARDS).max(1),
            origin: format!("{:016x}", rand::random::<u64>()),
            standing_aside: AtomicBool::new(false),
        }
    }

    fn is_standing_aside(&self) -> bool {
        self.standing_aside.load(Ordering::SeqCst)
    }

    /// Stops serving and keeping values (the flag first, so nothing is kept after the clear).
    pub fn stand_aside(&self) {
        self.standing_aside.store(true, Ordering::SeqCst);
        self.clear();
    }

    /// Serves again, from empty. The clear bumps every generation first, so a load that
    /// started while standing aside cannot store its possibly stale result.
    pub fn resume(&self) {
        self.clear();
        self.standing_aside.store(false, Ordering::SeqCst);
    }

    /// The payload telling other processes to drop `keys` (at most a few hundred: a
    /// notification is capped at 8000 bytes).
    pub fn notice<T: std::fmt::Display>(&self, keys: impl IntoIterator<Item = T>) -> String {
        let keys: Vec<String> = keys.into_iter().map(|key| key.to_string()).collect();
        format!("{} {}", self.origin, keys.join(","))
    }

    fn shard_index(&self, key: &K) -> usize {
        use std::hash::{BuildHasher, RandomState};
        use std::sync::OnceLock;
        // One hasher for every thread: a key must map to the same shard everywhere.
        static HASHER: OnceLock<RandomState> = OnceLock::new();
        let hash = HASHER.get_or_init(RandomState::new).hash_one(key);
        (hash as usize) % SHARDS
    }

    fn shard(&self, key: &K) -> &RwLock<Shard<K, V>> {
        &self.shards[self.shard_index(key)]
    }

    /// The cached value, or `load`'s (stored unless invalidated meanwhile). `load` returning
    /// `Ok(None)` is not cached: an unknown key costs a lookup each time, not memory.
    pub async fn get_or_load<E, F>(&self, key: K, load: F) -> Result<Option<V>, E>
    where
        F: Future<Output = Result<Option<V>, E>>,
    {
        if self.is_standing_aside() {
            return load.await;
        }
        let shard = self.shard(&key);
        let generation = {
            let shard = shard.read().expect("cache lock");
            if let Some(value) = shard.entries.get(&key) {
                return Ok(Some(value.clone()));
            }
            shard.generation
        };
        let loaded = load.await?;
        if let Some(value) = &loaded {
            let mut shard = shard.write().expect("cache lock");
            if shard.generation == generation {
                if shard.entries.len() >= self.capacity_per_shard
                    && let Some(victim) = shard.entries.keys().next().cloned()
                {
                    shard.entries.remove(&victim);
                }
                shard.entries.insert(key, value.clone());
            }
        }
        Ok(loaded)
    }

    /// Stores a value known to be current (a projector's own write, after its commit).
    pub fn put(&self, key: K, value: V) {
        let mut shard = self.shard(&key).write().expect("cache lock");
        shard.generation += 1;
        if self.is_standing_aside() {
            shard.entries.remove(&key);
            return;
        }
        if shard.entries.len() >= self.capacity_per_shard
            && !shard.entries.contains_key(&key)
            && let Some(victim) = shard.entries.keys().next().cloned()
        {
            shard.entries.remove(&victim);
        }
        shard.entries.insert(key, value);
    }

    /// Every shard's generation, to pass to [`Self::fill`] later.
    pub fn generations(&self) -> Vec<u64> {
        self.shards
            .iter()
            .map(|s| s.read().expect("cache lock").generation)
            .collect()
    }

    /// Stores `value` read from the table after `generations` were taken, unless its shard
    /// changed since (warming a cache in bulk) or the key is already cached (a newer write).
    pub fn fill(&self, key: K, value: V, generations: &[u64]) {
        let index = self.shard_index(&key);
        let mut shard = self.shards[index].write().expect("cache lock");
        if !self.is_standing_aside()
            && generations.get(index) == Some(&shard.generation)
            && !shard.entries.contains_key(&key)
            && shard.entries.len() < self.capacity_per_shard
        {
            shard.entries.insert(key, value);
        }
    }

    pub fn invalidate(&self, keys: impl IntoIterator<Item = K>) {
        for key in keys {
            let mut shard = self.shard(&key).write().expect("cache lock");
            shard.entries.remove(&key);
            shard.generation += 1;
        }
    }

    pub fn clear(&self) {
        for shard in &self.shards {
            let mut shard = shard.write().expect("cache lock");
            shard.entries.clear();
            shard.generation += 1;
        }
    }

    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| s.read().expect("cache lock").entries.len())
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl<K, V> InvalidatingCache<K, V>
where
    K: Hash + Eq + Clone + Send + Sync + 'static,
    V: Clone + Send + Sync + 'static,
{
    /// Follows `channel`: a payload of comma-separated keys (parsed by `parse`) drops those,
    /// `*` drops everything; while the channel is not followed the cache stands aside.
    pub fn subscription(
        self: &Arc<Self>,
        channel: &'static str,
        parse: fn(&str) -> Option<K>,
    ) -> Subscription {
        let on_notice = self.clone();
        let (on_unfollowed, on_followed) = (self.clone(), self.clone());
        Subscription {
            channel,
            on_notice: Arc::new(move |payload: &str| {
                if payload == "*" {
                    on_notice.clear();
                    return;
                }
                let (origin, keys) = payload.split_once(' ').unwrap_or(("", payload));
                if origin != on_notice.origin {
                    on_notice.invalidate(keys.split(',').filter_map(parse));
                }
            }),
            on_unfollowed: Arc::new(move || on_unfollowed.stand_aside()),
            on_followed: Arc::new(move || on_followed.resume()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_load_overtaken_by_an_invalidation_is_not_stored() {
        let cache: InvalidatingCache<u32, &str> = InvalidatingCache::new(100);
        let loaded = cache
            .get_or_load(1, async {
                // The row changes while we read it.
                cache.invalidate([1]);
                Ok::<_, ()>(Some("old"))
            })
            .await
            .unwrap();
        assert_eq!(loaded, Some("old"), "the caller still gets what it read");
        let again = cache
            .get_or_load(1, async { Ok::<_, ()>(Some("new")) })
            .await
            .unwrap();
        assert_eq!(again, Some("new"), "but the stale value was not kept");
        let cached = cache
            .get_or_load(1, async { Ok::<_, ()>(Some("never read")) })
            .await
            .unwrap();
        assert_eq!(cached, Some("new"));
    }

    #[tokio::test]
    async fn unknown_keys_are_not_cached_and_capacity_is_bounded() {
        let cache: InvalidatingCache<u32, u32> = InvalidatingCache::new(32);
        assert_eq!(
            cache
                .get_or_load(7, async { Ok::<_, ()>(None) })
                .await
                .unwrap(),
            None
        );
        assert!(cache.is_empty());
        for key in 0..1000 {
            cache
                .get_or_load(key, async move { Ok::<_, ()>(Some(key)) })
                .await
                .unwrap();
        }
        assert!(cache.len() <= 32, "{}", cache.len());
    }

    #[test]
    fn a_key_lives_in_the_same_shard_on_every_thread() {
        let cache: Arc<InvalidatingCache<u32, u32>> = Arc::new(InvalidatingCache::new(1000));
        for key in 0..200 {
            cache.put(key, key);
        }
        // Invalidate from other threads: every entry must go, wherever it was stored.
        let handles: Vec<_> = (0..4)
            .map(|part| {
                let cache = cache.clone();
                std::thread::spawn(move || cache.invalidate((0..200).filter(|k| k % 4 == part)))
            })
            .collect();
        for handle in handles {
            handle.join().unwrap();
        }
        assert!(cache.is_empty(), "{} entries survived", cache.len());
    }

    #[test]
    fn a_bulk_fill_does_not_overwrite_a_newer_value_or_outlive_an_invalidation() {
        let cache: InvalidatingCache<u32, &str> = InvalidatingCache::new(100);
        let generations = cache.generations();
        cache.put(1, "written by the projector");
        cache.invalidate([2]);
        cache.fill(1, "read before the write", &generations);
        cache.fill(2, "read before the invalidation", &generations);
        cache.fill(3, "untouched", &cache.generations());
        let get = |key| {
            futures::executor::block_on(cache.get_or_load(key, async { Ok::<_, ()>(None) }))
                .unwrap()
        };
        assert_eq!(get(1), Some("written by the projector"));
        assert_eq!(get(2), None);
        assert_eq!(get(3), Some("untouched"));
    }

    #[tokio::test]
    async fn notices_drop_named_keys_and_a_star_or_a_gap_drops_all() {
        let cache: Arc<InvalidatingCache<u32, u32>> = Arc::new(InvalidatingCache::new(100));
        for key in 1..=3 {
            cache
                .get_or_load(key, async move { Ok::<_, ()>(Some(key)) })
                .await
                .unwrap();
        }
        let subscription = cache.subscription("test", |s| s.parse().ok());
        (subscription.on_notice)(&cache.notice([1, 2]));
        assert_eq!(cache.len(), 3, "a process ignores its own notices");
        (subscription.on_notice)("another-process 1,2");
        assert_eq!(cache.len(), 1);
        (subscription.on_notice)("*");
        assert!(cache.is_empty());
        cache
            .get_or_load(4, async { Ok::<_, ()>(Some(4)) })
            .await
            .unwrap();
        (subscription.on_unfollowed)();
        assert!(cache.is_empty());
    }

    #[tokio::test]
    async fn while_notices_may_be_missed_nothing_is_served_or_kept() {
        let cache: Arc<InvalidatingCache<u32, u32>> = Arc::new(InvalidatingCache::new(100));
        let subscription = cache.subscription("test", |s| s.parse().ok());
        cache.put(1, 10);
        (subscription.on_unfollowed)();
        assert!(cache.is_empty());
        // Reads go to the table each time; writes and fills are not kept.
        for fresh in [11, 12] {
            let read = cache.get_or_load(1, async move { Ok::<_, ()>(Some(fresh)) });
            assert_eq!(read.await.unwrap(), Some(fresh));
        }
        cache.put(2, 20);
        cache.fill(3, 30, &cache.generations());
        assert!(cache.is_empty());
        // A load that started while unfollowed does not store after the cache resumed.
        let generations = cache.generations();
        (subscription.on_followed)();
        cache.fill(4, 40, &generations);
        assert!(cache.is_empty());
        cache
            .get_or_load(5, async { Ok::<_, ()>(Some(50)) })
            .await
            .unwrap();
        assert_eq!(cache.len(), 1, "following again, the cache keeps values");
    }
}
