%% Erlang/OTP as a same-run peer of `bench erlang`. Each mode prints one line of `key=value`
%% pairs on stdout:
%%
%%   local N M P    in this node: N one-way messages carrying a P-byte binary to a counter
%%                  process, then a synchronous get (one-way rate); then M sequential
%%                  ping-pongs carrying the same binary (round-trip p50/p99)
%%   dist N M P     the same with the counter on a second node started with `peer`, over Erlang
%%                  distribution on 127.0.0.1 (epmd's port from ERL_EPMD_PORT)
%%   memory K       K idle processes (blocked in receive): bytes per process from
%%                  erlang:memory(processes) and from the OS resident set, and the spawn rate
%%
%% A warm-up of a tenth of N and M runs first in `local` and `dist`.
-module(erlang_peer).
-mode(compile).
-export([main/1]).

-define(COUNTER,
    "-module(bench_counter).\n"
    "-export([start/0]).\n"
    "start() -> spawn(fun() -> loop(0) end).\n"
    "loop(N) ->\n"
    "    receive\n"
    "        {inc, _} -> loop(N + 1);\n"
    "        {get, From} -> From ! {count, N}, loop(N);\n"
    "        {ping, From, B} -> From ! {pong, B}, loop(N);\n"
    "        stop -> ok\n"
    "    end.\n").

main(["local", N, M, P]) ->
    {Mod, Bin} = counter_module(),
    {module, Mod} = code:load_binary(Mod, "bench_counter.erl", Bin),
    messaging(bench_counter:start(), i(N), i(M), i(P));
main(["dist", N, M, P]) ->
    {Mod, Bin} = counter_module(),
    ok = application:set_env(kernel, inet_dist_use_interface, {127, 0, 0, 1}),
    Me = list_to_atom("bench_a" ++ integer_to_list(erlang:unique_integer([positive])) ++ "@127.0.0.1"),
    {ok, _} = net_kernel:start([Me, longnames]),
    {ok, Peer, Node} = peer:start_link(#{name => peer:random_name(bench_b), host => "127.0.0.1",
                                         longnames => true,
                                         args => ["-kernel", "inet_dist_use_interface",
                                                  "{127,0,0,1}"]}),
    {module, Mod} = erpc:call(Node, code, load_binary, [Mod, "bench_counter.erl", Bin]),
    Pid = erpc:call(Node, bench_counter, start, []),
    messaging(Pid, i(N), i(M), i(P)),
    peer:stop(Peer);
main(["memory", K]) ->
    Count = i(K),
    erlang:garbage_collect(),
    P0 = erlang:memory(processes),
    R0 = rss(),
    T0 = erlang:monotonic_time(nanosecond),
    Pids = spawn_idle(Count, []),
    T1 = erlang:monotonic_time(nanosecond),
    P1 = erlang:memory(processes),
    R1 = rss(),
    %% The list of pids held here is 16 bytes per element of the processes' figure: left out.
    io:format("process_bytes=~.1f rss_bytes=~.1f spawn_per_s=~.1f~n",
              [(P1 - P0 - 16 * Count) / Count, (R1 - R0) / Count, Count * 1.0e9 / (T1 - T0)]),
    [Pid ! stop || Pid <- Pids],
    ok;
main(Args) ->
    io:format(standard_error, "usage: local|dist N M P | memory K (got ~p)~n", [Args]),
    halt(2).

counter_module() ->
    Forms = forms(?COUNTER),
    {ok, Mod, Bin} = compile:forms(Forms, [binary]),
    {Mod, Bin}.

forms(Src) ->
    {ok, Tokens, _} = erl_scan:string(Src),
    split_forms(Tokens, [], []).

split_forms([], [], Acc) -> lists:reverse(Acc);
split_forms([{dot, _} = Dot | Rest], Cur, Acc) ->
    {ok, Form} = erl_parse:parse_form(lists:reverse([Dot | Cur])),
    split_forms(Rest, [], [Form | Acc]);
split_forms([T | Rest], Cur, Acc) -> split_forms(Rest, [T | Cur], Acc).

messaging(Pid, N, M, P) ->
    Payload = binary:copy(<<"x">>, P),
    W = max(1, N div 10),
    oneway(Pid, Payload, W, 0),
    _ = pings(Pid, Payload, max(1, M div 10), []),
    T0 = erlang:monotonic_time(nanosecond),
    oneway(Pid, Payload, N, W),
    T1 = erlang:monotonic_time(nanosecond),
    Sorted = lists:sort(pings(Pid, Payload, M, [])),
    io:format("oneway_per_s=~.1f rtt_p50_ns=~p rtt_p99_ns=~p~n",
              [N * 1.0e9 / max(1, T1 - T0), pct(Sorted, 0.50), pct(Sorted, 0.99)]).

%% N one-way messages, then a get that must read Before + N (every message delivered).
oneway(Pid, Payload, N, Before) ->
    send_n(Pid, Payload, N),
    Pid ! {get, self()},
    Expected = Before + N,
    receive
        {count, Expected} -> ok;
        {count, Other} -> error({count, Other, expected, Expected})
    end.

send_n(_, _, 0) -> ok;
send_n(Pid, Payload, N) -> Pid ! {inc, Payload}, send_n(Pid, Payload, N - 1).

pings(_, _, 0, Acc) -> Acc;
pings(Pid, Payload, M, Acc) ->
    T0 = erlang:monotonic_time(nanosecond),
    Pid ! {ping, self(), Payload},
    receive {pong, _} -> ok end,
    pings(Pid, Payload, M - 1, [erlang:monotonic_time(nanosecond) - T0 | Acc]).

spawn_idle(0, Acc) -> Acc;
spawn_idle(K, Acc) -> spawn_idle(K - 1, [spawn(fun() -> receive stop -> ok end end) | Acc]).

rss() ->
    {ok, Statm} = file:read_file("/proc/self/statm"),
    [_, Resident | _] = binary:split(Statm, <<" ">>, [global]),
    binary_to_integer(Resident) * 4096.

pct(Sorted, P) ->
    Rank = max(1, ceil(P * length(Sorted))),
    lists:nth(Rank, Sorted).

i(S) -> list_to_integer(S).
