//! Channel round trip and streaming rate: `tokio::sync::mpsc` (the floor) versus
//! the CSP `ChannelServer` in process (buffered and rendezvous) and the same
//! channel called over the libp2p transport.
//!
//! Everything runs on one current-thread runtime with a `LocalSet`, as a node's
//! RPC thread does, so the ratios isolate what each layer adds.

use std::rc::Rc;
use std::time::{Duration, Instant};

mod support;

use criterion::{criterion_group, criterion_main, BenchmarkGroup, Criterion, Throughput};
use futures::stream::{FuturesUnordered, StreamExt};
use support::serve_on_loopback;
use tokio::runtime::Runtime;
use tokio::task::LocalSet;
use ww::csp::{ChanConfig, ChannelServer, Item};
use ww::rpc::{self, Connection, RpcConfig};
use ww::schema::channel_capnp::{chan, recver, sender};

/// Values in flight over the transport when streaming, each way.
const IN_FLIGHT: usize = 32;
/// The value sent over the transport: a small Text.
const VALUE: &str = "hello, channel";

fn channel(capacity: usize) -> ChannelServer {
    ChannelServer::new(ChanConfig {
        capacity,
        ..ChanConfig::default()
    })
    .unwrap()
}

/// One in-process value, made once: `Item` copies it out of a capnp message.
fn local_item() -> Rc<Item> {
    let mut message = capnp::message::Builder::new_default();
    message
        .init_root::<capnp::any_pointer::Builder>()
        .set_as::<capnp::text::Owned>(VALUE)
        .unwrap();
    let root: capnp::any_pointer::Reader = message.get_root_as_reader().unwrap();
    Item::copy_from(None, root).unwrap()
}

/// A buffered channel exported on one transport and reached from another.
async fn remote_channel() -> (Vec<Box<dyn std::any::Any>>, Connection<chan::Client>) {
    let server = channel(64);
    let protocol = rpc::export_protocol("bench").unwrap();
    let pair = serve_on_loopback(&protocol, server.client().client).await;
    let connection = rpc::connect::<_, chan::Client>(
        &pair.caller,
        pair.server_peer,
        &protocol,
        RpcConfig::default(),
    )
    .await
    .unwrap();
    // Warm the connection up with one round trip.
    let remote = Remote::of(connection.client());
    remote_send(&remote).await;
    remote_recv(&remote).await;
    let keep: Vec<Box<dyn std::any::Any>> = vec![Box::new(server), Box::new(pair)];
    (keep, connection)
}

/// The `Sender` and `Recver` views of a remote `Chan` (it extends both).
#[derive(Clone)]
struct Remote {
    sender: sender::Client,
    recver: recver::Client,
}

impl Remote {
    fn of(chan: &chan::Client) -> Self {
        Remote {
            sender: sender::Client {
                client: chan.client.clone(),
            },
            recver: recver::Client {
                client: chan.client.clone(),
            },
        }
    }
}

async fn remote_send(remote: &Remote) {
    let mut request = remote.sender.send_request();
    request
        .get()
        .init_value()
        .set_as::<capnp::text::Owned>(VALUE)
        .unwrap();
    request.send().promise.await.unwrap();
}

async fn remote_recv(remote: &Remote) {
    let answer = remote.recver.recv_request().send().promise.await.unwrap();
    let text = answer
        .get()
        .unwrap()
        .get_value()
        .get_as::<capnp::text::Reader>()
        .unwrap();
    assert_eq!(text.len(), VALUE.len());
}

fn run<F: std::future::Future>(runtime: &Runtime, local: &LocalSet, future: F) -> F::Output {
    local.block_on(runtime, future)
}

fn round_trips(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &Runtime,
    local: &LocalSet,
    remote: &Remote,
) {
    group.bench_function("mpsc_64", |b| {
        let (tx, mut rx) = tokio::sync::mpsc::channel::<Rc<Item>>(64);
        let item = local_item();
        b.iter_custom(|iters| {
            run(runtime, local, async {
                let started = Instant::now();
                for _ in 0..iters {
                    let (sent, received) = tokio::join!(tx.send(item.clone()), rx.recv());
                    sent.unwrap();
                    received.unwrap();
                }
                started.elapsed()
            })
        })
    });
    for capacity in [64, 0] {
        group.bench_function(format!("chan_local_{capacity}"), |b| {
            let server = channel(capacity);
            let item = local_item();
            b.iter_custom(|iters| {
                run(runtime, local, async {
                    let started = Instant::now();
                    for _ in 0..iters {
                        let (sent, received) =
                            tokio::join!(server.send_local(item.clone()), server.recv_local());
                        sent.unwrap();
                        received.unwrap();
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.bench_function("chan_remote_64", |b| {
        b.iter_custom(|iters| {
            run(runtime, local, async {
                let started = Instant::now();
                for _ in 0..iters {
                    remote_send(remote).await;
                    remote_recv(remote).await;
                }
                started.elapsed()
            })
        })
    });
}

fn streams(
    group: &mut BenchmarkGroup<'_, criterion::measurement::WallTime>,
    runtime: &Runtime,
    local: &LocalSet,
    remote: &Remote,
) {
    group.bench_function("mpsc_64", |b| {
        let item = local_item();
        b.iter_custom(|iters| {
            run(runtime, local, async {
                let (tx, mut rx) = tokio::sync::mpsc::channel::<Rc<Item>>(64);
                let item = item.clone();
                let started = Instant::now();
                let sender = tokio::task::spawn_local(async move {
                    for _ in 0..iters {
                        tx.send(item.clone()).await.unwrap();
                    }
                });
                for _ in 0..iters {
                    rx.recv().await.unwrap();
                }
                sender.await.unwrap();
                started.elapsed()
            })
        })
    });
    for capacity in [64, 0] {
        group.bench_function(format!("chan_local_{capacity}"), |b| {
            let item = local_item();
            b.iter_custom(|iters| {
                run(runtime, local, async {
                    let server = channel(capacity);
                    let sending = server.clone();
                    let item = item.clone();
                    let started = Instant::now();
                    let sender = tokio::task::spawn_local(async move {
                        for _ in 0..iters {
                            sending.send_local(item.clone()).await.unwrap();
                        }
                    });
                    for _ in 0..iters {
                        server.recv_local().await.unwrap();
                    }
                    sender.await.unwrap();
                    started.elapsed()
                })
            })
        });
    }
    group.bench_function("chan_remote_64", |b| {
        b.iter_custom(|iters| {
            run(runtime, local, async {
                let started = Instant::now();
                let sending = async {
                    let mut calls = FuturesUnordered::new();
                    for _ in 0..iters {
                        if calls.len() == IN_FLIGHT {
                            calls.next().await;
                        }
                        calls.push(remote_send(remote));
                    }
                    while calls.next().await.is_some() {}
                };
                let receiving = async {
                    let mut calls = FuturesUnordered::new();
                    for _ in 0..iters {
                        if calls.len() == IN_FLIGHT {
                            calls.next().await;
                        }
                        calls.push(remote_recv(remote));
                    }
                    while calls.next().await.is_some() {}
                };
                tokio::join!(sending, receiving);
                started.elapsed()
            })
        })
    });
}

fn bench(c: &mut Criterion) {
    let (runtime, local) = support::node_runtime();
    let (_keep, connection) = run(&runtime, &local, remote_channel());
    let remote = Remote::of(connection.client());

    let mut group = c.benchmark_group("channel_round_trip");
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    round_trips(&mut group, &runtime, &local, &remote);
    group.finish();

    let mut group = c.benchmark_group("channel_stream");
    group.throughput(Throughput::Elements(1));
    group.warm_up_time(Duration::from_secs(1));
    group.measurement_time(Duration::from_secs(4));
    streams(&mut group, &runtime, &local, &remote);
    group.finish();
    drop(connection);
}

criterion_group!(benches, bench);
criterion_main!(benches);
