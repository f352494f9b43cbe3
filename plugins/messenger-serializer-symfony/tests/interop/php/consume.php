<?php

/*
 * A Symfony worker, as `messenger:consume` runs it: the configured transports, retries,
 * error details, the failure transport.
 *
 *   php consume.php CONFIG.json --receivers async[,failed] [--limit N] [--time-limit S]
 *                   [--stop-file PATH]
 *
 * Stops after --limit messages, after --time-limit seconds, or once the stop file exists.
 */

declare(strict_types=1);

require __DIR__.'/bootstrap.php';

use App\Interop\StderrLogger;
use Symfony\Component\EventDispatcher\EventDispatcher;
use Symfony\Component\Messenger\Event\WorkerRunningEvent;
use Symfony\Component\Messenger\EventListener\StopWorkerOnMessageLimitListener;
use Symfony\Component\Messenger\EventListener\StopWorkerOnTimeLimitListener;
use Symfony\Component\Messenger\Worker;

$config = interop_config($argv);
$options = interop_options($argv, ['receivers' => 'async', 'limit' => '0', 'time-limit' => '60', 'stop-file' => '']);
$logger = new StderrLogger();
$dispatcher = new EventDispatcher();
$transports = interop_transports($config, interop_serializer());
interop_listeners($config, $transports, $dispatcher, $logger);
$bus = interop_bus($config, $transports, $dispatcher, interop_handler($config));

if ((int) $options['limit'] > 0) {
    $dispatcher->addSubscriber(new StopWorkerOnMessageLimitListener((int) $options['limit'], $logger));
}
$dispatcher->addSubscriber(new StopWorkerOnTimeLimitListener((int) $options['time-limit'], $logger));
$stopFile = $options['stop-file'];
if ('' !== $stopFile) {
    $dispatcher->addListener(WorkerRunningEvent::class, static function (WorkerRunningEvent $event) use ($stopFile): void {
        if (file_exists($stopFile)) {
            $event->getWorker()->stop();
        }
    });
}

$receivers = [];
foreach (explode(',', $options['receivers']) as $name) {
    $receivers[$name] = $transports[$name];
}
$worker = new Worker($receivers, $bus, $dispatcher, $logger);
fwrite(\STDERR, sprintf("[php %d] worker started on %s\n", getmypid(), $options['receivers']));
$worker->run(['sleep' => 50000]);
fwrite(\STDERR, sprintf("[php %d] worker stopped\n", getmypid()));
