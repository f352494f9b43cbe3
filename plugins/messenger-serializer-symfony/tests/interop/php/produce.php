<?php

/*
 * Dispatches OrderPlaced messages on the default bus, routed to the configured transport.
 *
 *   php produce.php CONFIG.json --count N --prefix P [--start I] [--delay-ms D] [--trace 1]
 *
 * Message i (start <= i < start + count): orderId "P-i", amount 1000 + i, placedAt
 * 2026-03-01T12:00:00+02:00 plus i seconds; with --trace 1, a TraceStamp "trace-P-i" (a stamp
 * of the application's own). Prints "sent N" when done.
 */

declare(strict_types=1);

require __DIR__.'/bootstrap.php';

use App\Message\OrderPlaced;
use App\Stamp\TraceStamp;
use Symfony\Component\EventDispatcher\EventDispatcher;
use Symfony\Component\Messenger\Stamp\DelayStamp;

$config = interop_config($argv);
$options = interop_options($argv, ['count' => '1', 'prefix' => 'php', 'start' => '0', 'delay-ms' => '0', 'trace' => '0']);
$transports = interop_transports($config, interop_serializer());
$bus = interop_bus($config, $transports, new EventDispatcher(), null);

$base = new DateTimeImmutable('2026-03-01T12:00:00+02:00');
$delay = (int) $options['delay-ms'];
$start = (int) $options['start'];
$count = (int) $options['count'];
for ($i = $start; $i < $start + $count; ++$i) {
    $orderId = sprintf('%s-%d', $options['prefix'], $i);
    $stamps = $delay > 0 ? [new DelayStamp($delay)] : [];
    if ('1' === $options['trace']) {
        $stamps[] = new TraceStamp("trace-$orderId");
    }
    $bus->dispatch(new OrderPlaced($orderId, 1000 + $i, $base->modify("+$i seconds")), $stamps);
}
echo "sent $count\n";
