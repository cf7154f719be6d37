%% Restart latency of an OTP supervisor: a one_for_one supervisor with one permanent worker;
%% the worker's init reports its start time, a `crash` message makes it exit abnormally.
%% Prints the samples' p50 and p99 in nanoseconds (crash sent -> new incarnation's init).
-module(restart_bench).
-mode(compile).
-behaviour(supervisor).
-export([main/1, init/1, start_link/1, child_init/1]).

main([NStr]) ->
    logger:set_primary_config(level, none),
    N = list_to_integer(NStr),
    {ok, _Sup} = supervisor:start_link(?MODULE, self()),
    Pid0 = receive {started, _, P} -> P end,
    Sorted = lists:sort(loop(N, Pid0, [])),
    io:format("~p ~p~n", [pct(Sorted, 0.50), pct(Sorted, 0.99)]).

init(Parent) ->
    Flags = #{strategy => one_for_one, intensity => 1000000000, period => 1},
    Child = #{id => c, start => {?MODULE, start_link, [Parent]}, restart => permanent,
              shutdown => brutal_kill, type => worker},
    {ok, {Flags, [Child]}}.

start_link(Parent) -> proc_lib:start_link(?MODULE, child_init, [Parent]).

child_init(Parent) ->
    Parent ! {started, erlang:monotonic_time(nanosecond), self()},
    proc_lib:init_ack({ok, self()}),
    receive crash -> exit(crash) end.

loop(0, _, Acc) -> Acc;
loop(N, Pid, Acc) ->
    T0 = erlang:monotonic_time(nanosecond),
    Pid ! crash,
    receive {started, T1, New} -> loop(N - 1, New, [T1 - T0 | Acc]) end.

pct(Sorted, P) ->
    Rank = max(1, ceil(P * length(Sorted))),
    lists:nth(Rank, Sorted).
